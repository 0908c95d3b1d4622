# %% [markdown]
# # "PyTorch and Intro to Training", answered with mnistlab
#
# The course notebook's flow, cell by cell, on mnistlab's Python API. Every answer is
# measured here, on your machine. Run it as a script (`python examples/notebook_tour.py`)
# or open it in VS Code / Jupyter (jupytext) and run the cells one by one.
# Two environment variables make it small: MNISTLAB_EXAMPLE_STEPS caps the optimizer steps
# per epoch, MNISTLAB_EXAMPLE_DATASET picks another dataset (the tests use both).

# %%
import os
import tempfile
from pathlib import Path

import mnistlab
from mnistlab.core.environment import environment, format_environment

STEPS = int(os.environ.get("MNISTLAB_EXAMPLE_STEPS", "0")) or None
DATASET = os.environ.get("MNISTLAB_EXAMPLE_DATASET", "mnist")
OUT = Path(os.environ.get("MNISTLAB_EXAMPLE_OUT", tempfile.mkdtemp(prefix="mnistlab-tour-")))

# %% Cell 2: which torch, and is there a GPU?
print(format_environment(environment()))

# %% A module tour (the notebook's MyModule): tree, state_dict shapes, parameter count
print(mnistlab.summarize("mlp").format())

# %% Question 1: the first training sample, its shape, dtype and label
spec, root = mnistlab.get_dataset(DATASET), mnistlab.data_root()
mnistlab.fetch(spec, root)
splits = mnistlab.make_splits(spec, root, batch_size=64, val_fraction=0.2, seed=0, device="cpu")
x, y = next(iter(splits.train))
print(f"a batch: images {tuple(x.shape)} {x.dtype}, labels {tuple(y.shape)} {y.dtype}")
first = mnistlab.read_split(spec, root, train=True)
print(f"first training label: {int(first.labels[0])}")

# %% Questions 2 and 3: train the MLP for 10 epochs, plot, then resume for 10 more
cfg = mnistlab.TrainConfig(model="mlp", dataset=DATASET, epochs=10, device="cpu", max_steps=STEPS)
run = mnistlab.train(cfg, run_dir=OUT / "mlp", progress=False)
mnistlab.plot_runs([run], OUT / "mlp-10.png", title="after 10 epochs")
mnistlab.train(resume=run.path, overrides={"epochs": 10}, progress=False)
mnistlab.plot_runs([run], OUT / "mlp-20.png", title="after 20 epochs")
times = [r["epoch_seconds"] for r in run.metrics()]
print(f"per-epoch seconds: {', '.join(f'{t:.2f}' for t in times)}; total {sum(times):.1f} s")
print(f"test accuracy {run.test()['accuracy']:.2%}, test time {run.test()['seconds']:.2f} s")

# %% Question 4: train longer, or stop early? Read it off the validation curve
for line in mnistlab.training_observations(run):
    print(line)

# %% Questions 5-9: GPU vs CPU, MLP vs CNN. Measured, with the time split into phases
devices = ["cpu"] + (["cuda"] if mnistlab.resolve_device("auto").type == "cuda" else [])
train_split, _ = mnistlab.split_train_val(first, 0.2, 0)
result = mnistlab.run_bench(train_split, spec, models=["mlp", "cnn"], devices=devices,
                            pipelines=["reference", "resident"], steps=STEPS or 100, repeats=2)
print(mnistlab.format_bench_table(result))
for line in mnistlab.bench_observations(result):
    print(line)

# %% The last cell: FLOPs and parameters (what thop was meant to print), counted correctly
for name in ("mlp", "cnn"):
    print(mnistlab.format_profile(mnistlab.profile_model(name, batch_size=1)))
print(mnistlab.MACS_VS_FLOPS)
print(f"outputs in {OUT}")
