"""Q2: the MLP's training and validation loss over its first training, in one log-scale graph."""

from __future__ import annotations

from mnistlab.core.words import plural
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.plots import plot_runs
from mnistlab.report.sections.mlp_cpu import first_training, missing, mlp_run
from mnistlab.report.sections.section import Section


def sentence(inputs: Inputs) -> str:
    mlp = mlp_run(inputs)
    assert mlp is not None  # a Section's sentence is called only where its missing() is None
    first = first_training(inputs, mlp)
    return (
        f"Over its first {plural(len(first), 'epoch')} the MLP's training loss fell from "
        f"{first[0]['train_loss']:.4f} to {first[-1]['train_loss']:.4f} and its validation loss from "
        f"{first[0]['val_loss']:.4f} to {first[-1]['val_loss']:.4f}."
    )


def write(doc: Document, inputs: Inputs) -> None:
    mlp = mlp_run(inputs)
    if mlp is None:
        return
    first = first_training(inputs, mlp)
    n1 = int(first[-1]["epoch"])
    first_n = plural(n1, "epoch")
    doc.h2(f"Q2. Training and validation loss of the MLP over its first {first_n}")
    f = plot_runs(
        [mlp], inputs.figs / f"{mlp.name}-loss-{n1}.png", upto_epoch=n1, title=f"{mlp.name}: loss after {first_n}"
    )
    doc.image(f, f"{mlp.name}: train and validation loss after {first_n} (log scale)")
    doc.p(sentence(inputs))


SECTION = Section(
    write, "Q2", missing, order=50, sentence=sentence, ask="Plot the MLP's training and validation loss (log scale)"
)
