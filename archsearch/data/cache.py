"""Decode once, keep uint8 arrays: a second load of CIFAR-10 is a memory-mapped read.

Cache entries live under $ARCHSEARCH_CACHE (default ~/.cache/archsearch/arrays) and are
keyed by the source's path, size and mtime, so a changed source is decoded again; the new
entry then replaces the old one (each entry records its source in source.json), so a
refreshed copy of CIFAR-10 costs its 177 MB once, not once per refresh.

An entry is read as data like any other file (`reading.py`): its JSON through
`_io.read_json`, its arrays memory-mapped only when each is a regular file of at most
`MAX_ARRAY_BYTES` (no pickles); anything else (a FIFO, a truncated file) means a damaged
entry, decoded again from the source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import MiB, atomic_path, is_regular_file, make_dirs, read_json, write_json
from ..errors import ArchsearchError

KEYS = ("x_train", "y_train", "x_test", "y_test")
Decoded = tuple[dict[str, np.ndarray], list[str]]  # arrays, class names
# one cached array: twice the largest set kept in memory (folders.MAX_BYTES, 8 GiB); more is not ours
MAX_ARRAY_BYTES = 16 << 30
MAX_META_BYTES = 64 * MiB  # classes.json (100,000 names of 255 characters: 26 MB), source.json


def cache_dir() -> Path:
    # an empty value means the default, not the current folder
    return Path(os.environ.get("ARCHSEARCH_CACHE") or Path.home() / ".cache" / "archsearch" / "arrays")


def source_key(kind: str, path: Path) -> str:
    path = path.resolve()
    if path.is_dir():
        # an ImageFolder tree (perhaps inside one wrapping folder): its directories' mtimes and
        # entry counts change whenever a file is added, removed or renamed (statting 60,000
        # images would cost more); and the files near the top (CIFAR's pickles, overwritten in
        # place with cp) by size and mtime
        sig = repr(_tree_signature(path))
    else:
        st = path.stat()
        sig = f"{st.st_size}:{st.st_mtime_ns}"
    return f"{kind}-" + hashlib.sha256(f"{path}|{sig}".encode()).hexdigest()[:16]


def _tree_signature(root: Path, depth: int = 3) -> list:
    out, level = [], [root]
    for d in range(depth + 1):
        nxt = []
        for p in level:
            with os.scandir(p) as it:
                entries = list(it)
            out.append((str(p.relative_to(root)), p.stat().st_mtime_ns, len(entries)))
            for e in entries:
                if e.is_dir():
                    nxt.append(Path(e.path))
                elif d <= 1 and e.is_file():
                    st = e.stat()
                    out.append((str(Path(e.path).relative_to(root)), st.st_size, st.st_mtime_ns))
        level = nxt
    return sorted(out)


def problem(arrays: dict[str, np.ndarray], num_classes: int) -> str | None:
    """What is wrong with a set of arrays, or None: images (N, H, W, 3) uint8 with one
    label each, labels whole numbers in [0, num_classes), no split empty."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            return f"{split} images are {x.dtype} {tuple(x.shape)}, not uint8 (N, H, W, 3)"
        if y.ndim != 1 or len(y) != len(x):
            return f"{len(x)} {split} images but {len(y)} labels"
        if len(y) == 0:
            return f"no {split} images"
        if not np.issubdtype(y.dtype, np.integer):
            return f"{split} labels are {y.dtype}, not whole numbers"
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            return f"{split} labels run from {lo} to {hi}, outside the {num_classes} classes 0..{num_classes - 1}"
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        return f"train images are {arrays['x_train'].shape[1:]} but test images {arrays['x_test'].shape[1:]}"
    return None


def _read_entry(d: Path, num_classes: int) -> Decoded | None:
    """A complete, consistent cache entry, or None (absent, truncated, empty or disagreeing
    files: the caller decodes the source again)."""
    if not (d / "classes.json").exists() or not all(is_regular_file(d / f"{k}.npy", MAX_ARRAY_BYTES) for k in KEYS):
        return None
    try:
        classes = read_json(d / "classes.json", "cache entry", MAX_META_BYTES)  # not a regular file: refused
        arrays = {k: np.load(d / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in KEYS}
    except Exception:  # noqa: BLE001  an empty (0-byte) or truncated .npy raises EOFError, ValueError, OSError...
        return None
    if not isinstance(classes, list) or problem(arrays, num_classes) is not None:
        return None
    return arrays, classes


def cached_arrays(kind: str, source: Path, decode: Callable[[], Decoded], num_classes: int) -> Decoded:
    """Return the arrays and class names decoded from `source` (a file or folder), stored under
    `source_key(kind, source)`, decoding them the first time (or again, when the stored entry
    is damaged). Decoded source data that is not a valid dataset is refused with one line
    before anything is cached or trained. A new entry removes the complete entries of the same
    kind made on this host from the same path before it changed."""
    source = Path(source).resolve()
    key = source_key(kind, source)
    d = cache_dir() / key
    entry = _read_entry(d, num_classes)
    if entry is not None:
        return entry
    arrays, classes = decode()
    bad = problem(arrays, num_classes)
    if bad:
        raise ArchsearchError(f"the data is not a valid {num_classes}-class dataset: {bad}")
    make_dirs(d)
    if (d / "classes.json").exists():
        (d / "classes.json").unlink()  # the entry is incomplete until classes.json is written again
    for k in KEYS:
        with atomic_path(d / f"{k}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arrays[k]))
    ident = {"kind": kind, "path": str(source), "host": socket.gethostname()}
    write_json(d / "source.json", ident)
    write_json(d / "classes.json", list(classes))  # written last: it marks the entry complete
    _drop_replaced(key, ident)
    return arrays, classes


def _drop_replaced(key: str, ident: dict) -> None:
    """Remove the other complete entries made from the same source (its older contents) on
    this host: a cache shared between machines (an NFS home) may hold another machine's copy
    at the same path. An incomplete entry may still be being written by another process: it
    stays. A reader with a removed entry's arrays mapped keeps them until it closes them
    (POSIX unlink)."""
    for e in cache_dir().iterdir():
        if e.name == key or not e.name.startswith(ident["kind"] + "-") or not (e / "classes.json").exists():
            continue
        try:
            same = read_json(e / "source.json", "cache entry", MAX_META_BYTES) == ident
        except ArchsearchError:  # an entry from before source.json, or a damaged one
            continue
        if same:
            shutil.rmtree(e, ignore_errors=True)
