"""The paper's models as its code defines them, ported line by line to today's PyTorch
(only `Variable` and the CUDA check removed), for independent parameter counts.

Sources (Eric-mingjie/rethinking-network-pruning):
- cifar/l1-norm-pruning/models/resnet.py
- cifar/network-slimming/models/preresnet.py, densenet.py, channel_selection.py
- imagenet/network-slimming/vgg.py, imagenet/l1-norm-pruning/resnet.py (ImageNet; init left out: counts only)
Their `channel_selection.indexes` is an nn.Parameter (one float per stream channel); the
paper's tables count parameters without it, so `params()` leaves it out and reports it.
"""

import math

import torch
import torch.nn as nn


class channel_selection(nn.Module):
    def __init__(self, num_channels):
        super().__init__()
        self.indexes = nn.Parameter(torch.ones(num_channels))


# -- cifar/l1-norm-pruning/models/resnet.py ------------------------------------------------------
def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, cfg, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, cfg, stride)
        self.bn1 = nn.BatchNorm2d(cfg)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cfg, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride


class ResNet(nn.Module):
    def __init__(self, depth, num_classes=10, cfg=None):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        block = BasicBlock
        if cfg is None:
            cfg = [[16] * n, [32] * n, [64] * n]
            cfg = [item for sub_list in cfg for item in sub_list]
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, n, cfg=cfg[0:n])
        self.layer2 = self._make_layer(block, 32, n, cfg=cfg[n:2 * n], stride=2)
        self.layer3 = self._make_layer(block, 64, n, cfg=cfg[2 * n:3 * n], stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, cfg, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = "option A"  # a function in the original: no parameters
        layers = [block(self.inplanes, planes, cfg[0], stride, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, cfg[i]))
        return nn.Sequential(*layers)


# -- cifar/network-slimming/models/preresnet.py --------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, cfg, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg[0], cfg[1], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cfg[1])
        self.conv2 = nn.Conv2d(cfg[1], cfg[2], kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cfg[2])
        self.conv3 = nn.Conv2d(cfg[2], planes * 4, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride


class PreResNet(nn.Module):
    def __init__(self, depth=164, num_classes=10, cfg=None):
        super().__init__()
        assert (depth - 2) % 9 == 0
        n = (depth - 2) // 9
        block = Bottleneck
        if cfg is None:
            cfg = [[16, 16, 16], [64, 16, 16] * (n - 1), [64, 32, 32], [128, 32, 32] * (n - 1), [128, 64, 64],
                   [256, 64, 64] * (n - 1), [256]]
            cfg = [item for sub_list in cfg for item in sub_list]
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_layer(block, 16, n, cfg=cfg[0:3 * n])
        self.layer2 = self._make_layer(block, 32, n, cfg=cfg[3 * n:6 * n], stride=2)
        self.layer3 = self._make_layer(block, 64, n, cfg=cfg[6 * n:9 * n], stride=2)
        self.bn = nn.BatchNorm2d(64 * block.expansion)
        self.select = channel_selection(64 * block.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(cfg[-1], num_classes)

    def _make_layer(self, block, planes, blocks, cfg, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1,
                                                 stride=stride, bias=False))
        layers = [block(self.inplanes, planes, cfg[0:3], stride, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, cfg[3 * i: 3 * (i + 1)]))
        return nn.Sequential(*layers)


# -- cifar/network-slimming/models/densenet.py ---------------------------------------------------
class DenseBasicBlock(nn.Module):
    def __init__(self, inplanes, cfg, expansion=1, growthRate=12, dropRate=0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg, growthRate, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)


class Transition(nn.Module):
    def __init__(self, inplanes, outplanes, cfg):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.select = channel_selection(inplanes)
        self.conv1 = nn.Conv2d(cfg, outplanes, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)


class DenseNet(nn.Module):
    def __init__(self, depth=40, dropRate=0, num_classes=10, growthRate=12, compressionRate=1, cfg=None):
        super().__init__()
        assert (depth - 4) % 3 == 0
        n = (depth - 4) // 3
        block = DenseBasicBlock
        self.growthRate = growthRate
        self.dropRate = dropRate
        if cfg is None:
            cfg = []
            start = growthRate * 2
            for i in range(3):
                cfg.append([start + 12 * i for i in range(n + 1)])
                start += growthRate * 12
            cfg = [item for sub_list in cfg for item in sub_list]
        assert len(cfg) == 3 * n + 3
        self.inplanes = growthRate * 2
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, padding=1, bias=False)
        self.dense1 = self._make_denseblock(block, n, cfg[0:n])
        self.trans1 = self._make_transition(compressionRate, cfg[n])
        self.dense2 = self._make_denseblock(block, n, cfg[n + 1:2 * n + 1])
        self.trans2 = self._make_transition(compressionRate, cfg[2 * n + 1])
        self.dense3 = self._make_denseblock(block, n, cfg[2 * n + 2:3 * n + 2])
        self.bn = nn.BatchNorm2d(self.inplanes)
        self.select = channel_selection(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(cfg[-1], num_classes)

    def _make_denseblock(self, block, blocks, cfg):
        layers = []
        for i in range(blocks):
            layers.append(block(self.inplanes, cfg=cfg[i], growthRate=self.growthRate, dropRate=self.dropRate))
            self.inplanes += self.growthRate
        return nn.Sequential(*layers)

    def _make_transition(self, compressionRate, cfg):
        inplanes = self.inplanes
        outplanes = int(math.floor(self.inplanes // compressionRate))
        self.inplanes = outplanes
        return Transition(inplanes, outplanes, cfg)


def params(model: nn.Module) -> tuple[int, int]:
    """(parameters without the selection index vectors, the index vectors' size)."""
    idx = sum(p.numel() for n, p in model.named_parameters() if n.endswith("indexes"))
    return sum(p.numel() for p in model.parameters()) - idx, idx


# -- imagenet/network-slimming/vgg.py (commit 2ac473d) --------------------------------------------
class SlimmingVGG(nn.Module):
    """`slimmingvgg(config=cfg)`: VGG-11 (cfg "A") with BN, classifier Linear -> BatchNorm1d -> ReLU
    (x2) -> Linear; `cfg` may be a pruned one, as `prune.py` writes it (conv widths, 'M', and the
    two hidden widths last)."""

    def __init__(self, cfg=None, num_classes=1000):
        super().__init__()
        cfg = cfg or [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M', 4096, 4096]
        layers, in_channels = [], 3
        for v in cfg[:-2]:
            if v == 'M':
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_channels = v
        self.features = nn.Sequential(*layers)
        c = [cfg[-4], cfg[-2], cfg[-1]]
        self.classifier = nn.Sequential(
            nn.Linear(c[0] * 7 * 7, c[1]), nn.BatchNorm1d(c[1]), nn.ReLU(True),
            nn.Linear(c[1], c[2]), nn.BatchNorm1d(c[2]), nn.ReLU(True), nn.Linear(c[2], num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).view(x.size(0), -1))


# -- imagenet/l1-norm-pruning/resnet.py (commit 2ac473d): torchvision's ResNet, conv1 widths from cfg ----
class ImageNetResNet(nn.Module):
    """`ResNet(BasicBlock, layers, cfg)`: `cfg` gives each basic block's conv1 width (Li et al.'s
    pruned ResNet-34); the original's `fc = nn.Linear(cfg[-1], ...)` equals 512 only for an
    unpruned last block, so the classifier here reads the stream (512), as torchvision's does."""

    def __init__(self, layers, cfg=None, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        if cfg is None:
            cfg = [w for p, n in zip((64, 128, 256, 512), layers) for w in [p] * n]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        count = 0
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(planes, n, cfg[count:count + n], stride=1 if i == 0 else 2))
            count += n
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, cfg, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, cfg[0], stride, downsample)]
        self.inplanes = planes
        for i in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes, cfg[i]))
        return nn.Sequential(*layers)
