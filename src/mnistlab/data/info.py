"""Dataset statistics for `mnistlab data info` (the notebook's Question 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import read_split


def dataset_info(spec: DatasetSpec, root: Path) -> dict[str, Any]:
    train = read_split(spec, root, train=True)
    test = read_split(spec, root, train=False)
    pixels = train.images.double().div_(255)
    return {
        "dataset": spec.name,
        "raw_dir": str(spec.raw_dir(root)),
        "train_samples": len(train),
        "test_samples": len(test),
        "image_shape": list(train.images.shape[1:]),
        "stored_dtype": str(train.images.dtype).replace("torch.", ""),
        "model_input": {
            "shape": [1, *train.images.shape[1:]],
            "dtype": "float32",
            "transform": f"x/255, then (x - {spec.mean}) / {spec.std}",
        },
        "label_dtype": str(train.labels.dtype).replace("torch.", ""),
        "classes": list(spec.classes),
        "train_label_counts": torch.bincount(train.labels, minlength=len(spec.classes)).tolist(),
        "test_label_counts": torch.bincount(test.labels, minlength=len(spec.classes)).tolist(),
        "pixel_mean": float(pixels.mean()),
        "pixel_std": float(pixels.std()),
        "first_train_label": int(train.labels[0]),
    }


def class_label(index: int, name: str) -> str:
    """ "3" for MNIST's class 3 (its name is its index), "3 Dress" where the class has a name."""
    return str(index) if name == str(index) else f"{index} {name}"


def format_info(info: dict[str, Any]) -> str:
    classes = info["classes"]
    names = [class_label(i, c) for i, c in enumerate(classes)]
    w = max(len("class"), *(len(n) for n in names))
    hist = "\n".join(
        [f"  {'class':<{w}} {'train':>6} {'test':>6}"]
        + [
            f"  {names[i]:<{w}} {a:>6} {b:>6}"
            for i, (a, b) in enumerate(zip(info["train_label_counts"], info["test_label_counts"], strict=True))
        ]
    )
    return "\n".join(
        [
            f"{info['dataset']} in {info['raw_dir']}",
            f"samples: {info['train_samples']:,} train, {info['test_samples']:,} test",
            f"image: {info['image_shape']} {info['stored_dtype']} on disk; model input "
            f"{info['model_input']['shape']} {info['model_input']['dtype']} ({info['model_input']['transform']})",
            f"labels: {info['label_dtype']}, {len(classes)} classes",
            f"pixel mean {info['pixel_mean']:.6f}, std {info['pixel_std']:.6f} (of x/255 over the training images)",
            f"first training sample's label: {info['first_train_label']}",
            "label histogram:",
            hist,
        ]
    )
