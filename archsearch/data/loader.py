"""The whole dataset as one uint8 tensor on the training device, augmented in batches.

Follows airbench's CifarLoader: no DataLoader, no per-image Python. Each epoch draws a
`randperm`; each batch is gathered, randomly cropped from a 4-pixel zero padding (the
original code's `RandomCrop(32, padding=4)`), flipped, and normalised with tensor ops on
the device. All randomness comes from one `torch.Generator`, whose state is saved in
checkpoints, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..distributed import SINGLE, Dist


class Batches:
    """What every training loader shares: the number of batches in an epoch (the lr schedule
    counts on it), normalisation on the device, and the one `torch.Generator` whose state a
    checkpoint saves, so that a resumed run sees the batches an uninterrupted one would."""

    n: int
    batch_size: int
    drop_last: bool
    channels_last: bool
    generator: torch.Generator

    def _init_common(self, mean, std, channels: int, seed: int, generator_device: torch.device | str) -> None:
        self.mean = (torch.tensor(mean, dtype=torch.float32) * 255).view(1, channels, 1, 1).to(self.device)
        self.inv_std = (1.0 / (torch.tensor(std, dtype=torch.float32) * 255)).view(1, channels, 1, 1).to(self.device)
        self.generator = torch.Generator(device=generator_device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def _normalise(self, xb: torch.Tensor) -> torch.Tensor:
        xb = (xb.float() - self.mean) * self.inv_std  # the layout asked for, whatever the source's was
        return xb.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


class DeviceLoader(Batches):
    """`dist` (a `distributed.Dist`): each process keeps its contiguous slice of every global
    batch; the order and the crops and flips are drawn for the whole global batch, so the
    processes together see exactly what one process would."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, mean, std, *,
                 train: bool, device: torch.device | str = "cpu", flip: bool = True, pad: int = 4,
                 seed: int = 0, channels_last: bool = False, drop_last: bool = False, dist: Dist = SINGLE):
        self.dist = dist
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.train, self.flip, self.pad = train, flip, pad if train else 0
        self.drop_last = drop_last
        self.channels_last = channels_last
        imgs = torch.from_numpy(np.array(x, copy=True)).permute(0, 3, 1, 2)  # NHWC -> NCHW, uint8 (a private, writable copy)
        if self.pad:
            imgs = torch.nn.functional.pad(imgs, (self.pad,) * 4)  # zeros, as torchvision's RandomCrop
        self.images = imgs.contiguous().to(self.device)
        self.labels = torch.from_numpy(np.array(y, dtype=np.int64)).to(self.device)
        self.n = len(self.labels)
        self.size = x.shape[1]
        self._init_common(mean, std, self.images.shape[1], seed, self.device)
        self._ar = torch.arange(self.size, device=self.device)

    def _augment(self, idx: torch.Tensor) -> torch.Tensor:
        b, g, part = len(idx), self.generator, self.dist.shard(len(idx))
        if self.pad:
            # one gather does every crop: rows/cols are per-image shifted index ranges
            dy = torch.randint(0, 2 * self.pad + 1, (b,), device=self.device, generator=g)[part]
            dx = torch.randint(0, 2 * self.pad + 1, (b,), device=self.device, generator=g)[part]
            idx = idx[part]
            rows = (dy[:, None] + self._ar)[:, None, :, None]
            cols = (dx[:, None] + self._ar)[:, None, None, :]
            ch = torch.arange(self.images.shape[1], device=self.device)[None, :, None, None]
            xb = self.images[idx[:, None, None, None], ch, rows, cols]
        else:
            idx = idx[part]
            xb = self.images[idx]
        if self.flip:
            flip = (torch.rand(b, device=self.device, generator=g) < 0.5)[part]
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        return xb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.train:
            order = torch.randperm(self.n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(self.n, device=self.device)
        stop = (self.n // self.batch_size) * self.batch_size if self.drop_last else self.n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            if self.train:
                xb, idx = self._augment(idx), idx[self.dist.shard(len(idx))]
            else:
                idx = idx[self.dist.shard(len(idx))]
                if not len(idx):
                    continue
                xb = self.images[idx]
            yield self._normalise(xb), self.labels[idx]
