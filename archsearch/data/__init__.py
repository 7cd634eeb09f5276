"""Datasets: one registry by the short names users type (`digits`, `c10`, `c100`).

A loader returns a `Dataset` of uint8 NHWC arrays, decoded once and cached (see
`cache.py`); `DeviceLoader` (loader.py) then keeps the whole set on the training
device and augments there, with no per-image Python work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ArchsearchError

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


def register_dataset(name: str, title: str, num_classes: int):
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS[name] = DatasetInfo(name, title, num_classes, fn)
        return fn
    return deco


def get_info(name: str) -> DatasetInfo:
    """A built-in dataset, or a folder registered with `archsearch data add` (folders.py)."""
    if name in DATASETS:
        return DATASETS[name]
    from .folders import load_folder, read_registry

    entries = read_registry()
    if name in entries:
        e = entries[name]
        return DatasetInfo(name, f"{e['path']} ({len(e['classes'])} classes, {e['size']}px)", len(e["classes"]),
                           lambda data_dir=None, download=True: load_folder(e), input_size=e["size"])
    raise ArchsearchError(f"unknown dataset {name!r}; known: {', '.join(known_names())} "
                          "(register a folder of your own: archsearch data add NAME PATH --size N)")


def known_names() -> list[str]:
    from .folders import read_registry

    try:
        return list(DATASETS) + sorted(read_registry())
    except ArchsearchError:
        return list(DATASETS)


def default_data_dir() -> Path:
    return Path(os.environ.get("ARCHSEARCH_DATA", Path.home() / ".cache" / "archsearch" / "data"))


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Load a registered dataset. `data_dir` defaults to $ARCHSEARCH_DATA or ~/.cache/archsearch/data."""
    from .cache import problem

    info = get_info(name)
    ds = info.load(Path(data_dir) if data_dir is not None else default_data_dir(), download=download)
    bad = problem({"x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test},
                  info.num_classes)
    if ds.num_classes != info.num_classes or bad:  # checked here, before any training, not at the first batch
        raise ArchsearchError(f"{name} from {ds.source} is not a valid {info.num_classes}-class dataset: {bad}")
    return ds


from . import cifar, digits  # noqa: E402,F401  (register the datasets)
from .loader import DeviceLoader  # noqa: E402,F401


def subset_train(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """The same dataset with a fixed, class-stratified subset of `n` training images (the
    test set untouched): for reduced-scale runs. `None` or `n >= len` returns `ds`."""
    if n is None or n >= len(ds.x_train):
        return ds
    if n < ds.num_classes:
        raise ArchsearchError(f"a training subset needs at least one image per class ({ds.num_classes}), got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.y_train))
    per_class = {c: order[ds.y_train[order] == c] for c in range(ds.num_classes)}
    quota = np.full(ds.num_classes, n // ds.num_classes)
    quota[: n - quota.sum()] += 1
    idx = np.sort(np.concatenate([per_class[c][: quota[c]] for c in range(ds.num_classes)]))
    return Dataset(name=ds.name, x_train=np.ascontiguousarray(ds.x_train[idx]), y_train=ds.y_train[idx],
                   x_test=ds.x_test, y_test=ds.y_test, num_classes=ds.num_classes, mean=ds.mean, std=ds.std,
                   flip=ds.flip, source=f"{ds.source} (train subset {len(idx)}, seed {seed})", classes=ds.classes)
