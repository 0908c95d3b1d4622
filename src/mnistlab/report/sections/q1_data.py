"""Q1: the sample and the label, their shapes and dtypes, and the label histogram (lab.json's data record)."""

from __future__ import annotations

from mnistlab.core.defaults import DEFAULT_BATCH_SIZE
from mnistlab.report.document import Document
from mnistlab.report.inputs import LAB_FILE, Inputs
from mnistlab.report.plots import plot_label_histogram
from mnistlab.report.sections.section import Section

BALANCED_SKEW = 1.25  # most common over rarest training label up to which the classes count as balanced


def missing(inputs: Inputs) -> str | None:
    if not inputs.lab:
        return f"the data is described only in a lab directory ({LAB_FILE})"
    return None if inputs.lab.get("data") else f"{LAB_FILE} has no data record"


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    lab, root = inputs.lab, inputs.root
    d = lab["data"]
    shape = d["model_input"]["shape"]
    doc.h2("Q1. The data: what is the sample, what is the label, their shapes and dtypes")
    doc.p(f"Answer: the first training element is a pair: the sample, an image of shape {d['image_shape']} "
          f"stored as {d['stored_dtype']} and given to the model as {shape} {d['model_input']['dtype']} (a batch "
          f"of {DEFAULT_BATCH_SIZE} is [{DEFAULT_BATCH_SIZE}, {', '.join(map(str, shape))}]), and the label, an "
          f"{d['label_dtype']} class index, here {d['first_train_label']}.")
    doc.table(["dataset", "train", "test", "image", "on disk", "model input", "labels", "first label"],
              [[d["dataset"], f"{d['train_samples']:,}", f"{d['test_samples']:,}", str(d["image_shape"]),
                d["stored_dtype"], f"{shape} {d['model_input']['dtype']}", d["label_dtype"], d["first_train_label"]]])
    doc.p(f"Normalisation: {d['model_input']['transform']}; measured pixel mean {d['pixel_mean']:.6f}, "
          f"std {d['pixel_std']:.6f}. The training set is split {lab.get('split', '')} with seed {lab.get('seed', '')}.")
    for name, caption in (("first-sample.png", f"The first training sample, label {d['first_train_label']}"),
                          ("samples.png", "The first training samples with their labels")):
        if (root / name).is_file():
            doc.image(root / name, caption)
    train, test = d.get("train_label_counts"), d.get("test_label_counts")
    classes = d.get("classes") or [str(i) for i in range(len(train or []))]
    if train and test and len(train) == len(test) == len(classes):
        few = min(range(len(classes)), key=train.__getitem__)
        many = max(range(len(classes)), key=train.__getitem__)
        skew = train[many] / max(1, train[few])
        doc.p(f"Label histogram: the classes are {'close to balanced' if skew <= BALANCED_SKEW else 'not balanced'}: "
              f"the rarest training label is {classes[few]} ({train[few]:,}) and the most common "
              f"{classes[many]} ({train[many]:,}), {skew:.2f}x as many.")
        doc.table(["label", "train", "test"], [[c, f"{a:,}", f"{b:,}"] for c, a, b in zip(classes, train, test)])
        doc.image(plot_label_histogram(classes, train, test, inputs.figs / "labels.png"),
                  "Label histogram of the training and test sets")


SECTION = Section(write, "Q1", missing, order=20)
