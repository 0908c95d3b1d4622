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


def sentence(inputs: Inputs) -> str:
    assert inputs.lab is not None  # a Section's sentence is called only where its missing() is None
    d = inputs.lab["data"]
    m = d["model_input"]
    return (
        f"A sample is an image, {m['shape']} {m['dtype']} as the model sees it ({d['image_shape']} "
        f"{d['stored_dtype']} on disk); its label is an {d['label_dtype']} class index (the first is "
        f"{d['first_train_label']})."
    )


def write(doc: Document, inputs: Inputs) -> None:
    lab, root = inputs.lab, inputs.root
    if lab is None or missing(inputs):
        return
    d = lab["data"]
    shape = d["model_input"]["shape"]
    doc.h2("Q1. The data: what is the sample, what is the label, their shapes and dtypes")
    doc.table(
        [
            "dataset",
            "train",
            "test",
            "image",
            "on disk",
            "model input",
            f"a batch of {DEFAULT_BATCH_SIZE}",
            "labels",
            "first label",
        ],
        [
            [
                d["dataset"],
                f"{d['train_samples']:,}",
                f"{d['test_samples']:,}",
                str(d["image_shape"]),
                d["stored_dtype"],
                f"{shape} {d['model_input']['dtype']}",
                str([DEFAULT_BATCH_SIZE, *shape]),
                d["label_dtype"],
                d["first_train_label"],
            ]
        ],
    )
    if (root / "first-sample.png").is_file():
        doc.image(root / "first-sample.png", f"The first training sample, label {d['first_train_label']}")
    train, test = d.get("train_label_counts"), d.get("test_label_counts")
    classes = d.get("classes") or [str(i) for i in range(len(train or []))]
    balance = ""
    if train and test and len(train) == len(test) == len(classes):
        doc.image(
            plot_label_histogram(classes, train, test, inputs.figs / "labels.png"),
            "How many training and test images carry each label",
        )
        few = min(range(len(classes)), key=train.__getitem__)
        many = max(range(len(classes)), key=train.__getitem__)
        skew = train[many] / max(1, train[few])
        balance = (
            f" Classes {'close to balanced' if skew <= BALANCED_SKEW else 'not balanced'}: label "
            f"{classes[many]} has {skew:.2f}x the images of label {classes[few]}."
        )
    doc.p(
        f"Input: {d['model_input']['transform']} (pixel mean {d['pixel_mean']:.4f}, std {d['pixel_std']:.4f}). "
        f"Split {lab.get('split', '')}, seed {lab.get('seed', '')}." + balance
    )


SECTION = Section(
    write, "Q1", missing, order=20, sentence=sentence, ask="What are the sample and the label: their shapes and dtypes?"
)
