"""How the speedrun's recipe was chosen: variants trained on a validation split, never on the test set.

Trains on the first 50,000 training images and reports accuracy on the last 10,000 (which the test
set never sees), with the speedrun's protocol in plain PyTorch (Adam, one-cycle, one epoch, bf16
autocast + channels-last unless --fp32/--nocl). docs/speedrun.md lists what each variant measured.
The time printed is for orientation only (one process per variant, not interleaved); the ladder
(benchmarks/speedrun_ladder.py) is what compares speed.

Variants (first argument): v0 = the speednet before issue 20 (conv, BN, ReLU, then pool); v1 = pool
before BN and ReLU; avg = average pool; amax = max as a reshape; s2 = a stride-2 first conv and no
pool (s2k4: 4x4 kernel); w1 = a frozen first conv from the whitened 3x3 patches (top --k eigenvectors
and their negatives); cd = the second conv as a dense layer. Options: --crop N (pixels off each side),
--c1/--c2/--d (widths), --bs, --lr, --pct, --ls (label smoothing), --frac (of the epoch), --nhwc
(flatten in channels-last order), --compile, --prof (a torch.profiler table of steps 30-60).

    python benchmarks/speedrun_validation.py v1 --crop 2 --c1 16 --d 256 --bs 256 --lr 0.03 --ls 0.1 --nhwc --seeds 4

`recipe` (issue 32): the speedrun's own code, not this file's net: `measure.speedrun.run_seed` with the
`Recipe` (its defaults, or --model/--bs/--lr/--pct/--ls/--b2/--frac/--shift/--below given) and the CPU's
default levers, trained
on the first 50,000 and evaluated on the last 10,000 training images; the time printed is run_seed's.

    python benchmarks/speedrun_validation.py recipe --seeds 8
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.loader import read_split

p = argparse.ArgumentParser()
p.add_argument("variant")
p.add_argument("--seeds", type=int, default=2)
p.add_argument("--bs", type=int, default=128)
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--frac", type=float, default=1.0)
p.add_argument("--k", type=int, default=16)
p.add_argument("--c1", type=int, default=32)
p.add_argument("--crop", type=int, default=0)
p.add_argument("--nhwc", action="store_true")
p.add_argument("--c2", type=int, default=64)
p.add_argument("--d", type=int, default=128)
p.add_argument("--pct", type=float, default=0.25)
p.add_argument("--ls", type=float, default=0.0)
p.add_argument("--b1", type=float, default=0.9)
p.add_argument("--b2", type=float, default=0.999)
p.add_argument("--tta", default="")
p.add_argument("--anneal", default="cos")
p.add_argument("--div", type=float, default=25.0)
p.add_argument("--fdiv", type=float, default=1e4)
p.add_argument("--fp32", action="store_true")
p.add_argument("--nocl", action="store_true")
p.add_argument("--compile", action="store_true")
p.add_argument("--prof", action="store_true")
p.add_argument("--model", default=None)
p.add_argument("--shift", type=int, default=None)
p.add_argument("--below", type=float, default=None)
a = p.parse_args()
torch.set_num_threads(int(os.environ.get("T", "2")))
spec = get_dataset("mnist")
root = data_root(None)
tr = read_split(spec, root, True)
if a.variant == "recipe":  # the speedrun's own run_seed, with the validation split as its "test" set
    import dataclasses

    from mnistlab.data.loader import RawSplit
    from mnistlab.training.recipe import Recipe, default_levers, load_to_device, run_seed

    given = {
        "model": a.model,
        "batch_size": a.bs if "--bs" in os.sys.argv else None,
        "max_lr": a.lr if "--lr" in os.sys.argv else None,
        "pct_start": a.pct if "--pct" in os.sys.argv else None,
        "label_smoothing": a.ls if "--ls" in os.sys.argv else None,
        "adam_beta2": a.b2 if "--b2" in os.sys.argv else None,
        "epoch_fraction": a.frac if "--frac" in os.sys.argv else None,
        "test_shift": a.shift,
        "test_shift_below": a.below,
    }
    recipe = dataclasses.replace(Recipe(), **{k: v for k, v in given.items() if v is not None})
    cpu = torch.device("cpu")
    levers = default_levers(cpu)
    train, val = RawSplit(tr.images[:50000], tr.labels[:50000]), RawSplit(tr.images[50000:], tr.labels[50000:])
    tl, vl, _ = load_to_device(train, val, spec, recipe.batch_size, cpu, dtype=levers.autocast_dtype or torch.float32)
    import mnistlab.training.recipe as sr

    peaks = []  # every evaluated image's softmax peak (the plain pass): how many the shifted views take
    plain_forward = sr.ShiftedViews.forward

    def counting(self, x):
        with torch.no_grad():
            peaks.append(self.model(x).float().softmax(1).amax(1))
        return plain_forward(self, x)

    sr.ShiftedViews.forward = counting
    accs, times = [], []
    timed_peaks = []
    for seed in range(a.seeds):
        peaks.clear()
        r = run_seed(recipe, levers, seed, tl, vl, spec.shape)
        timed_peaks += peaks[1:]  # not the warm-up's batch, evaluated by the untrained net
        accs.append(r.accuracy)
        times.append(r.seconds)
        print(
            f"  seed {seed}: {r.accuracy:.2f}% in {r.seconds:.2f} s (train {r.train_s:.2f} s, eval {r.eval_s:.2f} s)",
            flush=True,
        )
    if timed_peaks:
        allp = torch.cat(timed_peaks)
        print(
            "share of evaluated images whose softmax peaks below "
            + ", ".join(f"{t}: {100 * (allp < t).float().mean():.1f}%" for t in (0.5, 0.6, 0.7, 0.8, 0.9))
        )
    print(
        f"recipe {recipe} {levers.describe()}: mean {statistics.fmean(accs):.3f} min {min(accs):.2f} "
        f"median time {statistics.median(times):.2f}s"
    )
    raise SystemExit(0)


def norm(u8):
    return u8.unsqueeze(1).float().div(255).sub(spec.mean).div(spec.std)


Xtr, Ytr, Xva, Yva = norm(tr.images[:50000]), tr.labels[:50000], norm(tr.images[50000:]), tr.labels[50000:]
CLF = torch.contiguous_format if a.nocl else torch.channels_last
Xtr = Xtr.contiguous(memory_format=CLF)
Xva = Xva.contiguous(memory_format=CLF)


def whiten_filters(X, k, n=5000, eps=1e-2):
    """conv1 filters: the top-k eigenvectors of the 3x3 patches of the unshuffled image, scaled by "
    "1/sqrt(eigenvalue), +/-."""
    x = F.pixel_unshuffle(X[:n].contiguous(), 2)  # (n,4,14,14)
    pt = F.unfold(x, 3).transpose(1, 2).reshape(-1, x.shape[1] * 9).double()
    pt = pt - pt.mean(0)
    cov = pt.T @ pt / len(pt)
    ev, V = torch.linalg.eigh(cov)
    ev, V = ev.flip(0)[:k], V.flip(1)[:, :k]
    W = (V / (ev + eps).sqrt()).T.reshape(k, x.shape[1], 3, 3).float()
    return torch.cat([W, -W])


class Net(nn.Module):
    def __init__(self, v, X):
        super().__init__()
        self.v = v
        c1 = 2 * a.k if v.startswith("w") else a.c1
        self.un = nn.PixelUnshuffle(2)
        ks, st = {"s2": (3, 2), "s2k4": (4, 2)}.get(v, (3, 1))
        self.conv1 = nn.Conv2d(4, c1, ks, stride=st, bias=False)
        if v.startswith("w"):
            self.conv1.weight.data.copy_(whiten_filters(X, a.k))
            self.conv1.weight.requires_grad_(False)
        self.bn1 = nn.BatchNorm2d(c1, affine=not v.startswith("w"))
        self.conv2 = nn.Conv2d(c1, a.c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(a.c2)
        if v == "cd":
            self.conv2 = nn.Linear(c1 * 25, a.c2 * 9, bias=False)
            self.bn2 = nn.BatchNorm1d(a.c2 * 9)
        side = ((28 - 2 * a.crop) // 2 - 2) // 2 - 2
        if v in ("s2", "s2k4"):
            side = 4 if not a.crop else 3
        self.fc = nn.Linear(a.c2 * side * side, a.d, bias=False)
        self.bn3 = nn.BatchNorm1d(a.d)
        self.head = nn.Linear(a.d, 10)

    def forward(self, x, off=(0, 0)):
        if a.crop:
            i, j = a.crop + off[0], a.crop + off[1]
            x = x[..., i : i + 28 - 2 * a.crop, j : j + 28 - 2 * a.crop]
        x = self.conv1(self.un(x))
        if self.v in ("s2", "s2k4"):
            x = F.relu(self.bn1(x))
        elif self.v in ("v0",):
            x = F.max_pool2d(F.relu(self.bn1(x)), 2)
        elif self.v == "avg":
            x = F.relu(self.bn1(F.avg_pool2d(x, 2)))
        elif self.v == "amax":
            B, C, H, W = x.shape
            x = x.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C).amax((2, 4)).permute(0, 3, 1, 2)
            x = F.relu(self.bn1(x))
        else:  # pool first
            x = F.relu(self.bn1(F.max_pool2d(x, 2)))
        if self.v == "cd":
            x = F.relu(self.bn2(self.conv2(x.permute(0, 2, 3, 1).flatten(1))))
            return self.head(F.relu(self.bn3(self.fc(x))))
        x = F.relu(self.bn2(self.conv2(x)))
        x = x.permute(0, 2, 3, 1).flatten(1) if a.nhwc else x.flatten(1)
        x = F.relu(self.bn3(self.fc(x)))
        return self.head(x)


accs, times = [], []
for seed in range(a.seeds):
    torch.manual_seed(seed)
    m = Net(a.variant, Xtr).to(memory_format=CLF)
    fwd = torch.compile(m) if a.compile else m
    params = [q for q in m.parameters() if q.requires_grad]
    n = int(len(Ytr) * a.frac)
    steps = n // a.bs
    opt = torch.optim.Adam(params, lr=a.lr, betas=(a.b1, a.b2), fused=True)
    sch = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        a.lr,
        total_steps=steps,
        pct_start=a.pct,
        cycle_momentum=False,
        anneal_strategy=a.anneal,
        div_factor=a.div,
        final_div_factor=a.fdiv,
    )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(Ytr), generator=g)[: steps * a.bs]
    t0 = time.perf_counter()
    m.train()
    for s in range(steps):
        b = idx[s * a.bs : (s + 1) * a.bs]
        x, y = Xtr[b], Ytr[b]
        if s == 20:
            t0 = time.perf_counter()
            skipped = 20
        if a.prof and s == 30:
            from torch.profiler import profile

            pr = profile(record_shapes=True)
            pr.__enter__()
        if a.prof and s == 60:
            pr.__exit__(None, None, None)
            print(pr.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30))
        with torch.autocast("cpu", torch.bfloat16, enabled=not a.fp32):
            loss = F.cross_entropy(fwd(x), y, label_smoothing=a.ls)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sch.step()
    t1 = time.perf_counter()
    m.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=not a.fp32):
        for i in range(0, len(Yva), 2000):
            offs = [(0, 0)] + [tuple(int(v) for v in o.split(",")) for o in a.tta.split(";") if o]
            logits = sum(m(Xva[i : i + 2000], o).float().softmax(1) for o in offs)
            correct += (logits.argmax(1) == Yva[i : i + 2000]).sum().item()
    t2 = time.perf_counter()
    accs.append(100 * correct / len(Yva))
    times.append(t2 - t0)
    print(
        f"  seed {seed}: {accs[-1]:.2f}% train {t1 - t0:.2f}s ({(t1 - t0) / (steps - 20) * 1e3:.2f} ms/step after "
        f"20) eval {t2 - t1:.2f}s",
        flush=True,
    )
print(
    f"{a.variant} {vars(a)}: mean {statistics.fmean(accs):.3f} min {min(accs):.2f} median time "
    f"{statistics.median(times):.2f}s"
)
