"""Datasets: one registry by the short names users type (`digits`, `c10`, `c100`).

A loader returns a `Dataset` of uint8 NHWC arrays, decoded once and cached (see
`cache.py`); `DeviceLoader` (loader.py) then keeps the whole set on the training
device and augments there, with no per-image Python work.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ArchsearchError
from .base import CIFAR_MEAN, CIFAR_STD, DATASETS, Dataset, DatasetInfo, default_data_dir, register_dataset
from .loader import DeviceLoader

# each module registers its datasets; the order of this line is the order they are listed in
from . import cifar, digits, imagenet  # noqa: F401,I001  (isort: skip)
from .folders import load_folder, read_registry
from .stream import StreamingDataset

AnyDataset = Dataset | StreamingDataset  # what load_dataset returns: in memory, or streamed from disk


def get_info(name: str) -> DatasetInfo:
    """A built-in dataset, or a folder registered with `archsearch data add` (folders.py)."""
    if name in DATASETS:
        return DATASETS[name]
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
    try:
        return list(DATASETS) + sorted(read_registry())
    except ArchsearchError:
        return list(DATASETS)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> "AnyDataset":
    """Load a registered dataset. `data_dir` defaults to $ARCHSEARCH_DATA or ~/.cache/archsearch/data."""
    info = get_info(name)
    ds = info.load(Path(data_dir) if data_dir is not None else default_data_dir(), download=download)
    bad = ds.problem()
    if ds.num_classes != info.num_classes or bad:  # checked here, before any training, not at the first batch
        raise ArchsearchError(f"{name} from {ds.source} is not a valid {info.num_classes}-class dataset: {bad}")
    return ds


def stratified(labels: np.ndarray, num_classes: int, n: int, seed: int = 0,
               what: str = "a training subset") -> np.ndarray:
    """Sorted indices of a fixed, class-stratified subset of `n` of `labels` (n // classes of
    each class, the first n % classes classes one more), drawn with `seed`."""
    if n < num_classes:
        raise ArchsearchError(f"{what} needs at least one image per class ({num_classes}), got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    per_class = {c: order[labels[order] == c] for c in range(num_classes)}
    quota = np.full(num_classes, n // num_classes)
    quota[: n - quota.sum()] += 1
    return np.sort(np.concatenate([per_class[c][: quota[c]] for c in range(num_classes)]))


def subset_train(ds: "AnyDataset", n: int | None, seed: int = 0) -> "AnyDataset":
    """The same dataset with a fixed, class-stratified subset of `n` training images (the
    test set untouched): for reduced-scale runs. `None` or `n >= len` returns `ds`."""
    if n is None or n >= ds.n_train:
        return ds
    idx = stratified(ds.y_train, ds.num_classes, n, seed)
    return ds.subset(idx, f"train subset {len(idx)}, seed {seed}")


__all__ = ["CIFAR_MEAN", "CIFAR_STD", "DATASETS", "AnyDataset", "Dataset", "DatasetInfo", "DeviceLoader",
           "StreamingDataset", "default_data_dir", "get_info", "known_names", "load_dataset", "register_dataset",
           "stratified", "subset_train"]
