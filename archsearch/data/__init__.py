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
        from ..distributed import SINGLE

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
        from .cache import problem

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


def get_info(name: str) -> DatasetInfo:
    """A built-in dataset, or a folder registered with `archsearch data add` (folders.py)."""
    if name in DATASETS:
        return DATASETS[name]
    from .folders import load_folder, read_registry

    entries = read_registry()
    if name in entries:
        e = entries[name]
        how = "streamed" if e["stream"] else "in memory"
        return DatasetInfo(name, f"{e['path']} ({len(e['classes'])} classes, {e['size']}px, {how})",
                           len(e["classes"]), lambda data_dir=None, download=True: load_folder(e),
                           input_size=e["size"], nets=e["nets"])
    raise ArchsearchError(f"unknown dataset {name!r}; known: {', '.join(known_names())} "
                          "(register a folder of your own: archsearch data add NAME PATH --size N)")


def known_names() -> list[str]:
    from .folders import read_registry

    try:
        return list(DATASETS) + sorted(read_registry())
    except ArchsearchError:
        return list(DATASETS)


def default_data_dir() -> Path:
    # an empty value means the default, not the current folder
    return Path(os.environ.get("ARCHSEARCH_DATA") or Path.home() / ".cache" / "archsearch" / "data")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> "AnyDataset":
    """Load a registered dataset. `data_dir` defaults to $ARCHSEARCH_DATA or ~/.cache/archsearch/data."""
    info = get_info(name)
    ds = info.load(Path(data_dir) if data_dir is not None else default_data_dir(), download=download)
    bad = ds.problem()
    if ds.num_classes != info.num_classes or bad:  # checked here, before any training, not at the first batch
        raise ArchsearchError(f"{name} from {ds.source} is not a valid {info.num_classes}-class dataset: {bad}")
    return ds


from . import cifar, digits, imagenet  # noqa: E402,F401  (register the datasets)
from .loader import DeviceLoader  # noqa: E402,F401
from .stream import StreamingDataset  # noqa: E402

AnyDataset = Dataset | StreamingDataset  # what load_dataset returns: in memory, or streamed from disk


def subset_train(ds: "AnyDataset", n: int | None, seed: int = 0) -> "AnyDataset":
    """The same dataset with a fixed, class-stratified subset of `n` training images (the
    test set untouched): for reduced-scale runs. `None` or `n >= len` returns `ds`."""
    if n is None or n >= ds.n_train:
        return ds
    if n < ds.num_classes:
        raise ArchsearchError(f"a training subset needs at least one image per class ({ds.num_classes}), got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.y_train))
    per_class = {c: order[ds.y_train[order] == c] for c in range(ds.num_classes)}
    quota = np.full(ds.num_classes, n // ds.num_classes)
    quota[: n - quota.sum()] += 1
    idx = np.sort(np.concatenate([per_class[c][: quota[c]] for c in range(ds.num_classes)]))
    return ds.subset(idx, f"train subset {len(idx)}, seed {seed}")
