"""ResNet-18 with torchvision's topology and state_dict key names, without torchvision.

BasicBlocks [2, 2, 2, 2], widths 64-128-256-512. Module and parameter names match
``torchvision.models.resnet18`` exactly (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0``, ``fc``), so a torchvision ImageNet state_dict loads with
``strict=True`` into ``resnet18(stem="imagenet", num_classes=1000)``.

Two stems:

- ``"imagenet"``: 7x7 stride-2 ``conv1`` then 3x3 stride-2 max pool (torchvision's).
- ``"small"``: 3x3 stride-1 ``conv1`` and no max pool (``maxpool`` is an ``nn.Identity``), for
  32x32 inputs; spatial sizes of layer1..layer4 are then 32, 16, 8, 4.

Input has 3 channels in both cases (the digits are replicated to 3 channels), so the stem is the
same shape as torchvision's apart from the kernel size.

The only departure from torchvision's module tree is parameter-free: each block applies two
distinct ReLU modules (``relu1`` after ``bn1``, ``relu2`` after the residual add) instead of one
shared ``relu``, so that a forward hook can tap each DRAM boundary once
(see ``fmcodec.eval.activations``). State dicts are unaffected.
"""

from __future__ import annotations

import torch
from torch import nn

STEMS = ("small", "imagenet")
WIDTHS = (64, 128, 256, 512)
BLOCKS = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, stem: str = "imagenet", in_channels: int = 3):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, not {stem!r}")
        self.stem = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip(WIDTHS, BLOCKS, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(inplanes, planes, stride)]
            layer += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, stem: str = "imagenet", in_channels: int = 3) -> ResNet18:
    """ResNet-18; ``resnet18()`` is torchvision's ImageNet model (11,689,512 parameters)."""
    return ResNet18(num_classes=num_classes, stem=stem, in_channels=in_channels)


def load_torchvision(path: str) -> ResNet18:
    """An ImageNet ResNet-18 from a torchvision state_dict file (``resnet18-f37072fd.pth``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = resnet18(num_classes=state["fc.weight"].shape[0], stem="imagenet")
    model.load_state_dict(state, strict=True)
    return model.eval()
