"""scikit-learn's bundled 8x8 digits, upscaled to 32x32 RGB: the embedded default.

It needs no download, so the quickstart and the tests run anywhere. The split is fixed
(stratified, 20% test, random_state=0): 1437 train / 360 test images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import Dataset, register_dataset
from .cache import cached_arrays

DIGITS_SPLIT_SEED = 0


DIGITS_CACHE = "digits-v1"  # the key's kind: bump it when the decoding below changes


def _sklearn_file() -> Path | None:
    """scikit-learn's bundled digits file, found without importing scikit-learn (a second
    of every process's start: the sweep's workers load digits from the array cache)."""
    spec = importlib.util.find_spec("sklearn")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    f = Path(locs[0]) / "datasets" / "data" / "digits.csv.gz" if locs else None
    return f if f is not None and f.is_file() else None


def _decode() -> tuple[dict[str, np.ndarray], list[str]]:
    # start-up cost: scikit-learn takes 1.7 s (measured), and a cached decode never needs it
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=y)
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}, [str(i) for i in range(10)]


@register_dataset("digits", "scikit-learn digits (8x8 upscaled to 32x32)", 10)
def load_digits(data_dir: Path | None = None, download: bool = True) -> Dataset:
    src = _sklearn_file()
    arrays, classes = (cached_arrays(f"{DIGITS_CACHE}-s{DIGITS_SPLIT_SEED}", src, _decode, 10)
                       if src is not None else _decode())
    x_tr = arrays["x_train"]
    m = x_tr.reshape(-1, 3).mean(0) / 255.0
    s = x_tr.reshape(-1, 3).std(0) / 255.0
    return Dataset(
        name="digits", x_train=x_tr, y_train=arrays["y_train"], x_test=arrays["x_test"], y_test=arrays["y_test"],
        num_classes=10, mean=tuple(float(v) for v in m), std=tuple(float(v) for v in s),
        flip=False,  # a mirrored digit is a different glyph
        source="sklearn.datasets.load_digits (bundled)", classes=classes,
    )
