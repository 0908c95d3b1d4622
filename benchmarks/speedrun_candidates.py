"""Candidate nets for the speedrun (issue 32), as model specs for benchmarks/speedrun_validation.py's `recipe` mode
and the ladder: `benchmarks/speedrun_candidates.py:Name`. Each is speednet with one change, so that its
validation accuracy and its step time can be set beside speednet's."""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.training.models import SpeedNet


class Wide(SpeedNet):
    """speednet with other widths: first conv c1, second conv c2, dense d."""

    c1, c2, d = 16, 32, 256

    def __init__(self) -> None:
        super().__init__()
        self.stem[1] = nn.Conv2d(4, self.c1, 3, bias=False)
        self.stem[3] = nn.BatchNorm2d(self.c1)
        self.stem[5] = nn.Conv2d(self.c1, self.c2, 3, bias=False)
        self.stem[6] = nn.BatchNorm2d(self.c2)
        self.dense[0] = nn.Linear(9 * self.c2, self.d, bias=False)
        self.dense[1] = nn.BatchNorm1d(self.d)
        self.head = nn.Linear(self.d, 10)


class C1x24(Wide):
    c1 = 24


class C2x48(Wide):
    c2 = 48


class D384(Wide):
    d = 384


class ZeroHead(SpeedNet):
    """speednet whose last layer starts at zero (every class equally likely at the first step)."""

    def __init__(self) -> None:
        super().__init__()
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)


class TTA(SpeedNet):
    """speednet that, in eval mode, averages its softmax over the crop and the crops one pixel up and down
    (`shifts`: row, column offsets of the 24x24 crop); training is speednet's, untouched."""

    shifts = ((0, 0), (1, 0), (-1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.crop:
            return super().forward(x)
        c, (h, w) = self.crop, x.shape[-2:]
        views = [x[:, :, c + i : h - c + i, c + j : w - c + j] for i, j in self.shifts]
        probs = sum(
            self.head(self.dense(self.stem(v).permute(0, 2, 3, 1).flatten(1))).float().softmax(1) for v in views
        )
        return probs.div_(len(views)).log()  # log-probabilities: argmax and cross-entropy read them as logits


class TTA5(TTA):
    shifts = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


class BNMomentum(SpeedNet):
    """speednet whose batch norms average their running statistics with another momentum (torch's: 0.1)."""

    momentum = 0.05

    def __init__(self) -> None:
        super().__init__()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = self.momentum


class BNMomentum02(BNMomentum):
    momentum = 0.2


class SelectiveTTA(TTA):
    """TTA for the images the net is unsure of only: the shifted views are computed for the rows whose
    plain softmax peaks below `threshold`, so evaluation costs 1 + 2 x (their share) forward passes."""

    threshold = 0.8
    shares: list[float] = []  # the share of unsure rows, per batch evaluated (for the record)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.crop:
            return SpeedNet.forward(self, x)
        logp = SpeedNet.forward(self, x).float().log_softmax(1)
        unsure = (logp.max(1).values < torch.log(torch.tensor(self.threshold))).nonzero().squeeze(1)
        type(self).shares.append(len(unsure) / len(x))
        if len(unsure):
            logp[unsure] = TTA.forward(self, x[unsure])
        return logp


class SelectiveTTA09(SelectiveTTA):
    threshold = 0.9


class SelectiveTTA07(SelectiveTTA):
    threshold = 0.7


class SelectiveTTA05(SelectiveTTA):
    threshold = 0.5


class SelectiveTTA06(SelectiveTTA):
    threshold = 0.6


class UnshuffleView(SpeedNet):
    """speednet with the crop and pixel unshuffle as one reshape copy that yields channels-last maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.crop
        x = x[:, 0, c : x.shape[-2] - c, c : x.shape[-1] - c]
        b, h, w = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2).permute(0, 1, 3, 2, 4).reshape(b, h // 2, w // 2, 4).permute(0, 3, 1, 2)
        x = self.stem[1:](x)
        return self.head(self.dense(x.permute(0, 2, 3, 1).flatten(1)))


class Conv6Stride2(SpeedNet):
    """speednet's crop, unshuffle and 3x3 conv as one 6x6 conv of stride 2 on the cropped image (the same
    function: each 3x3 window of the unshuffled 4 channels is a 6x6 window of pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem[0] = nn.Identity()
        self.stem[1] = nn.Conv2d(1, 16, 6, stride=2, bias=False)


class Conv2NCHW(SpeedNet):
    """speednet whose second conv (and its batch norm) runs in NCHW: oneDNN's backward-data kernel for it
    was 2.4x faster in NCHW than channels-last in isolation; the flatten follows the (c, h, w) order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.crop
        x = self.stem[:5](x[:, :, c : x.shape[-2] - c, c : x.shape[-1] - c])
        conv = self.stem[5]
        x = self.stem[7](self.stem[6](torch.nn.functional.conv2d(x.contiguous(), conv.weight.contiguous())))
        return self.head(self.dense(x.flatten(1)))
