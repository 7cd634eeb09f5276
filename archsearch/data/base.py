"""What every dataset is made of: the in-memory `Dataset`, a registered dataset's
`DatasetInfo`, and the registry (`DATASETS`, `register_dataset`) that the dataset modules
fill as `archsearch.data` imports them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..distributed import SINGLE
from .cache import problem
from .loader import DeviceLoader

# Paper's normalisation for CIFAR (DESIGN.md "Paper settings"); the same for CIFAR-100
# in the Rethinking code.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, 3)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool  # horizontal flip is a valid augmentation for this data
    source: str = ""
    classes: list[str] = field(default_factory=list)

    streaming = False  # the whole set is in memory (`stream.StreamingDataset` reads it from disk)

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    @property
    def size(self) -> int:
        return int(self.x_train.shape[1])

    def loader(self, split: str, batch_size: int, *, train: bool, device="cpu", seed: int = 0, pad: int = 4,
               channels_last: bool = False, indices: np.ndarray | None = None, dist=None,
               drop_last: bool = False) -> "DeviceLoader":
        """Batches of `split` ('train' or 'test') on `device`; `train` augments and shuffles;
        `dist` (distributed.Dist): this process's slice of every global batch."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if indices is not None:
            x, y = x[indices], y[indices]
        return DeviceLoader(x, y, batch_size, self.mean, self.std, train=train, device=device,
                            flip=self.flip, pad=pad, seed=seed, channels_last=channels_last,
                            dist=dist or SINGLE, drop_last=drop_last)

    def subset(self, idx: np.ndarray, note: str) -> "Dataset":
        """The same set with only the training images `idx`."""
        return Dataset(name=self.name, x_train=np.ascontiguousarray(self.x_train[idx]), y_train=self.y_train[idx],
                       x_test=self.x_test, y_test=self.y_test, num_classes=self.num_classes, mean=self.mean,
                       std=self.std, flip=self.flip, source=f"{self.source} ({note})", classes=self.classes)

    def problem(self) -> str | None:
        return problem({"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test,
                        "y_test": self.y_test}, self.num_classes)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"{self.num_classes} classes, from {self.source}")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    num_classes: int
    load: Callable[..., Dataset]
    input_size: int = 32  # the side of the images the networks see
    # which networks its arch names mean: "cifar" (the paper's CIFAR VGG/ResNet: 3x3 stem, one
    # linear layer) or "imagenet" (the paper's ImageNet VGG and torchvision's ResNets)
    nets: str = "cifar"


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, title: str, num_classes: int, *, input_size: int = 32, nets: str = "cifar"):
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS[name] = DatasetInfo(name, title, num_classes, fn, input_size=input_size, nets=nets)
        return fn
    return deco


def default_data_dir() -> Path:
    # an empty value means the default, not the current folder
    return Path(os.environ.get("ARCHSEARCH_DATA") or Path.home() / ".cache" / "archsearch" / "data")
