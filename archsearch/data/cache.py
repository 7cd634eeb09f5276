"""Decode once, keep uint8 arrays: a second load of CIFAR-10 is a memory-mapped read.

Cache entries live under $ARCHSEARCH_CACHE (default ~/.cache/archsearch/arrays) and are
keyed by the source's path, size and mtime, so a changed source is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import atomic_path, write_json

KEYS = ("x_train", "y_train", "x_test", "y_test")
Decoded = tuple[dict[str, np.ndarray], list[str]]  # arrays, class names


def cache_dir() -> Path:
    return Path(os.environ.get("ARCHSEARCH_CACHE", Path.home() / ".cache" / "archsearch" / "arrays"))


def source_key(kind: str, path: Path) -> str:
    path = path.resolve()
    if path.is_dir():
        # an ImageFolder tree: its directories' mtimes and entry counts change whenever a
        # file is added, removed or renamed; statting 60,000 images would cost more.
        dirs = [path] + [p for p in path.glob("*") if p.is_dir()] + [p for p in path.glob("*/*") if p.is_dir()]
        sig = repr(sorted((str(p.relative_to(path)), p.stat().st_mtime_ns, len(os.listdir(p))) for p in dirs))
    else:
        st = path.stat()
        sig = f"{st.st_size}:{st.st_mtime_ns}"
    return f"{kind}-" + hashlib.sha256(f"{path}|{sig}".encode()).hexdigest()[:16]


def cached_arrays(key: str, decode: Callable[[], Decoded]) -> Decoded:
    """Return the arrays and class names stored under `key`, decoding them the first time."""
    d = cache_dir() / key
    if (d / "classes.json").exists() and all((d / f"{k}.npy").exists() for k in KEYS):
        try:
            return ({k: np.load(d / f"{k}.npy", mmap_mode="r") for k in KEYS},
                    json.loads((d / "classes.json").read_text()))
        except (OSError, ValueError):
            pass  # a damaged entry is decoded again below
    arrays, classes = decode()
    d.mkdir(parents=True, exist_ok=True)
    for k in KEYS:
        with atomic_path(d / f"{k}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arrays[k]))
    write_json(d / "classes.json", list(classes))  # written last: it marks the entry complete
    return arrays, classes
