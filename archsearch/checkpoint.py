"""A training run's checkpoint: written every few epochs and at the end, and read back to
resume the run exactly (model, optimiser, the loader's and the global RNG states, the
history so far), refused when it belongs to a run with other settings or another lr rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import __version__
from ._io import load_torch, torch_save
from .errors import ArchsearchError, clip
from .schemas import CheckpointRecord, check

_AGAIN = "delete it to start the run over"


def load_checkpoint(path: Path, dev: torch.device) -> dict:
    """A checkpoint as plain data (`_io.load_torch`: a regular file within the size limit,
    unpickled by torch's restricted loader, so a crafted checkpoint in a shared run folder
    cannot run code), its tensors in place and its numbers checked like every record we
    read (`schemas.CheckpointRecord`: a NaN in its history would end in result.json)."""
    ck = load_torch(path, "checkpoint", map_location=dev, hint=_AGAIN)
    ok = (isinstance(ck, dict) and isinstance(ck.get("model"), dict) and isinstance(ck.get("opt"), dict)
          and isinstance(ck.get("loader_rng"), torch.Tensor)
          and all(isinstance(ck.get(k, torch.zeros(1, dtype=torch.uint8)), torch.Tensor)
                  for k in ("torch_rng", "cuda_rng")))
    if not ok:
        raise ArchsearchError(f"{path} is not an archsearch checkpoint ({_AGAIN})")
    try:
        check(CheckpointRecord, ck, f"checkpoint {path}")
    except ArchsearchError as e:
        raise ArchsearchError(f"{e} ({_AGAIN})") from None
    return ck


def save_checkpoint(path: Path, eng: Any, *, fingerprint: str, epoch: int, history: list[dict], elapsed: float,
                    lr_rule: list[float], start_epoch: int, config: dict | None) -> None:
    """Everything `restore` needs to go on from the end of `epoch` as if never stopped, with the
    resolved training config the run took (for the record, as result.json has it)."""
    torch_save({"fingerprint": fingerprint, "epoch": epoch, "model": eng.model.state_dict(),
                "opt": eng.opt.state_dict(), "loader_rng": eng.train_loader.generator.get_state(),
                **_global_rng(eng.dev), "history": history, "elapsed": elapsed,
                "archsearch_version": __version__, "lr_rule": lr_rule,
                **({"start_epoch": start_epoch} if start_epoch else {}),
                **({"config": config} if config is not None else {})}, path)


def restore(ck: dict, eng: Any, path: Path, fingerprint: str, lr_rule: list[float]) -> tuple[list[dict], int, float]:
    """Load checkpoint `ck` into the engine (model, optimiser, loader and global RNGs) and give
    back its (history, epoch, elapsed seconds); refused, in one line, for another run's."""
    if ck["fingerprint"] != fingerprint:
        raise ArchsearchError(f"{path} belongs to a run with other settings; "
                              "pass another --out, or delete it to start over")
    # the lr of every epoch's first step, as this code's rule computes it: a checkpoint records
    # it, so that a run resumed under a changed rule (a fix to the drops) stops instead of
    # mixing two schedules (the fingerprint hashes the settings, not the rule)
    if isinstance(ck.get("lr_rule"), list) and ck["lr_rule"] != lr_rule:
        raise ArchsearchError(f"{path} was trained under another learning-rate rule (archsearch "
                              f"{ck.get('archsearch_version', '?')}); delete it to train again under this one")
    try:
        eng.model.load_state_dict(ck["model"])
        eng.opt.load_state_dict(ck["opt"])
        eng.train_loader.load_state_dict({"generator": ck["loader_rng"].to("cpu")})
        _set_global_rng(ck, eng.dev)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise ArchsearchError(f"checkpoint {path} does not fit this run ({clip(e, 120)}); "
                              "delete it to start over") from None
    return ck["history"], ck["epoch"], float(ck["elapsed"])


def _global_rng(dev: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states that dropout (and any other layer drawing at random) uses, for
    the checkpoint: the CPU generator's, and on CUDA the device's too."""
    out = {"torch_rng": torch.get_rng_state()}
    if dev.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(dev)
    return out


def _set_global_rng(ck: dict, dev: torch.device) -> None:
    """Restore `_global_rng` (older checkpoints have none: they resume with the seed's state)."""
    if ck.get("torch_rng") is not None:
        torch.set_rng_state(ck["torch_rng"].to("cpu"))
    if dev.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["cuda_rng"].to("cpu"), dev)


__all__ = ["load_checkpoint", "save_checkpoint", "restore"]
