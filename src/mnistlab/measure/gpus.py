"""A small, cited table of GPU figures: what a prediction for a GPU that is not here reads.

Peaks are the vendors' dense figures (no 2:4 sparsity: datasheets print the sparse figure, twice the
dense one, for tensor-core formats), as each datasheet or whitepaper states them; bandwidth is the
memory's. They are ceilings no step reaches, which is what a lower bound on step time needs.

The dispatch cost is an assumption, not a datasheet figure: about 5 us per operation of an eager
PyTorch step on a GPU (Python, the dispatcher and one kernel launch), the order of magnitude
reported for eager PyTorch (CUDA's own launch is 2-5 us; the framework adds a few more). A step of
tiny kernels cannot run faster than its operations can be issued, however fast the GPU is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistlab.core.errors import ConfigError

DISPATCH_COST_S = 5e-6  # assumed, per eager operation on a GPU (see the module's docstring)
DEFAULT_GPU = "H100 SXM"  # a current datacenter GPU


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16_flops_per_s: float  # dense, tensor cores
    tf32_flops_per_s: float  # dense, tensor cores (the fp32 rate where there is no TF32)
    fp32_flops_per_s: float  # CUDA cores, no tensor cores
    bandwidth_bytes_per_s: float
    source: str  # the datasheet the row is read from
    url: str  # where it is published (kept out of the report, which links to nothing outside itself)
    note: str = ""  # what the row had to assume

    def peak(self, dtype: str) -> float:
        """The peak a convolution computing in `dtype` could use (and any operation, where the split is not
        known). A float32 convolution may run at the TF32 rate: PyTorch lets cuDNN use TF32 by default
        (torch.backends.cudnn.allow_tf32), so a lower bound takes the faster of the two (on a GPU without
        TF32 the row's TF32 figure is its fp32 one)."""
        if dtype == "bfloat16":
            return self.bf16_flops_per_s
        if dtype == "float32":
            return max(self.fp32_flops_per_s, self.tf32_flops_per_s)
        raise ConfigError(f"no peak for dtype {dtype!r} in the GPU table (bfloat16 or float32)")

    def matmul_peak(self, dtype: str) -> float:
        """The peak a matmul computing in `dtype` uses by default: float32 matmuls run at the FP32 rate
        (torch.get_float32_matmul_precision() is "highest" unless a user lowers it), bf16 at the bf16 rate."""
        if dtype == "float32":
            return self.fp32_flops_per_s
        return self.peak(dtype)


T = 1e12
GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu(
            "H100 SXM",
            989.4 * T,
            494.7 * T,
            66.9 * T,
            3.35e12,
            "NVIDIA H100 Tensor Core GPU datasheet",
            "https://www.nvidia.com/en-us/data-center/h100/",
        ),
        Gpu(
            "H200",
            989.4 * T,
            494.7 * T,
            66.9 * T,
            4.8e12,
            "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
            "https://www.nvidia.com/en-us/data-center/h200/",
        ),
        Gpu(
            "A100 80GB",
            312 * T,
            156 * T,
            19.5 * T,
            2.039e12,
            "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM)",
            "https://www.nvidia.com/en-us/data-center/a100/",
        ),
        Gpu(
            "L4",
            121 * T,
            60 * T,
            30.3 * T,
            300e9,
            "NVIDIA L4 Tensor Core GPU datasheet",
            "https://www.nvidia.com/en-us/data-center/l4/",
        ),
        Gpu(
            "T4",
            8.1 * T,
            8.1 * T,
            8.1 * T,
            320e9,
            "NVIDIA T4 Tensor Core GPU datasheet",
            "https://www.nvidia.com/en-us/data-center/tesla-t4/",
            "Turing has no bf16 or TF32 tensor cores: both rows are the fp32 rate",
        ),
        Gpu(
            "RTX 4090",
            165.2 * T,
            82.6 * T,
            82.6 * T,
            1008e9,
            "NVIDIA Ada Lovelace GPU architecture whitepaper, appendix (GeForce RTX 4090)",
            "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
            "bf16 with fp32 accumulate, the rate PyTorch's bf16 matmuls use",
        ),
        # the GPU of the one public, reproducible MNIST time we know (tuomaso/train_mnist_fast: 0.76 s to 99%);
        # desktop TU116: 1,536 CUDA cores x 2 FLOP (FMA) x 1.77 GHz boost = 5.44 TFLOP/s; 6 GB GDDR6 at 12 Gbps on
        # 192 bits = 288 GB/s
        Gpu(
            "GTX 1660 Ti",
            5.44 * T,
            5.44 * T,
            5.44 * T,
            288e9,
            "NVIDIA GeForce GTX 1660 Ti specifications (1,536 CUDA cores, 1,770 MHz boost, 288 GB/s) and the NVIDIA "
            "Turing GPU architecture whitepaper",
            "https://www.nvidia.com/en-us/geforce/graphics-cards/gtx-1660-ti/",
            "Turing TU116 has no tensor cores (no TF32, no bf16: both rows are the fp32 rate); the published run was "
            "on a laptop's GTX 1660 Ti (boost 1,335-1,590 MHz: 4.1-4.9 TFLOP/s, NVIDIA's notebook figures), and the "
            "desktop's faster clock keeps a lower bound one",
        ),
    )
}


def gpu(name: str) -> Gpu:
    """The table's row for `name` (case and spaces ignored); an unknown name is one line naming the known ones."""
    key = name.replace(" ", "").lower()
    for g in GPUS.values():
        if g.name.replace(" ", "").lower() == key:
            return g
    raise ConfigError(f"unknown GPU {name!r}: the table knows {', '.join(GPUS)}")


# the row of a name that contains the key (torch's name, spaces removed, lower case), the first that does
NAME_KEYS = {"h100": "H100 SXM", "h200": "H200", "a100": "A100 80GB", "4090": "RTX 4090", "1660ti": "GTX 1660 Ti"}


def match(device_name: str) -> Gpu | None:
    """The row for a GPU as torch names it ('NVIDIA H100 80GB HBM3'), or None when the table has none.
    An A100 40GB gets the 80GB row: its higher bandwidth only lowers a lower bound."""
    text = device_name.replace(" ", "").lower()
    for key, row in NAME_KEYS.items():
        if key in text:
            return GPUS[row]
    for row in ("L4", "T4"):  # only at the end of the name: an L40S is not an L4
        if text.endswith(row.lower()):
            return GPUS[row]
    return None
