"""LeNet-5 (LeCun et al., 1998) for 28x28 digits: a model of your own for mnistlab.

    mnistlab train --model examples/lenet5.py:LeNet5 --epochs 3
    mnistlab profile examples/lenet5.py:LeNet5
    mnistlab bench --models mlp examples/lenet5.py:LeNet5 --pipelines resident

Any class or function that returns an nn.Module works the same way; it is called with no
arguments, or with num_classes= when it takes that. The file must stand alone (imports of
installed packages are fine): the run keeps a copy of it, and eval and --resume run that copy.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """Two 5x5 convolutions with average pooling, then 120-84-classes: 61,706 parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),  # (B, 6, 28, 28): the padding stands in for 32x32 input
            nn.Tanh(),
            nn.AvgPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),  # (B, 16, 10, 10)
            nn.Tanh(),
            nn.AvgPool2d(2),  # (B, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 400)
            nn.Linear(16 * 5 * 5, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),  # (B, num_classes) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
