"""Lip-reading front-end: a 3-D conv stem (5x7x7) and a ResNet-18 trunk applied to every frame.

The shape lip-reading encoders share (AV-HuBERT's `ResEncoder`, auto_avsr's `Conv3dResNet`):
crops [B, 1, T, 88, 88] -> stem (time kernel 5, stride 2 in space) -> max pool -> four stages
of two basic blocks each (widths w, 2w, 4w, 8w) -> global average pool -> [B, T, 8w].
One output frame per input frame (25 Hz); the stem's time kernel sees two frames each side.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("prelu", "relu", "swish")  # AV-HuBERT: prelu; auto_avsr: swish
STEM_KERNEL = (5, 7, 7)  # time, height, width
STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18


def activation(kind: str, channels: int) -> nn.Module:
    """PReLU (one slope per channel), ReLU or Swish."""
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU()
    return nn.SiLU()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, kind: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = activation(kind, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = activation(kind, planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class ResNetTrunk(nn.Module):
    """Four stages of basic blocks, then a global average pool: [N, w, H, W] -> [N, 8w]."""

    def __init__(self, width: int, kind: str) -> None:
        super().__init__()
        inplanes = width
        for i, blocks in enumerate(STAGE_BLOCKS):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(BasicBlock(inplanes, planes, stride if b == 0 else 1, kind))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(STAGE_BLOCKS)):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.avgpool(x).flatten(1)


class VisualFrontEnd(nn.Module):
    """Lip crops [B, T, H, W] -> per-frame features [B, T, 8 * width]."""

    def __init__(self, width: int = 64, kind: str = "prelu") -> None:
        super().__init__()
        self.out_dim = 8 * width
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, width, STEM_KERNEL, stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            activation(kind, width),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.trunk = ResNetTrunk(width, kind)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        b, t = crops.shape[:2]
        x = self.frontend3D(crops[:, None])  # [B, w, T, H', W']
        x = x.transpose(1, 2).reshape(b * t, *x.shape[1:2], *x.shape[3:])
        return self.trunk(x).reshape(b, t, -1)
