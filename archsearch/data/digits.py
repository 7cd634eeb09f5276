"""scikit-learn's bundled 8x8 digits, upscaled to 32x32 RGB: the embedded default.

It needs no download, so the quickstart and the tests run anywhere. The split is fixed
(stratified, 20% test, random_state=0): 1437 train / 360 test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Dataset, register_dataset

DIGITS_SPLIT_SEED = 0


@register_dataset("digits", "scikit-learn digits (8x8 upscaled to 32x32)", 10)
def load_digits(data_dir: Path | None = None, download: bool = True) -> Dataset:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=y)
    m = x_tr.reshape(-1, 3).mean(0) / 255.0
    s = x_tr.reshape(-1, 3).std(0) / 255.0
    return Dataset(
        name="digits", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=10,
        mean=tuple(float(v) for v in m), std=tuple(float(v) for v in s),
        flip=False,  # a mirrored digit is a different glyph
        source="sklearn.datasets.load_digits (bundled)", classes=[str(i) for i in range(10)],
    )
