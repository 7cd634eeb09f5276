"""Export as `archsearch export` does it: a run folder's spec and weights (or a spec file
alone), found and checked, then exported with what the run recorded (preprocessing,
accuracy, provenance) in export.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._io import load_state
from ..errors import ArchsearchError
from ..export import destination, export, parse_formats
from ..spec import ArchSpec
from ..train import load_result


@dataclass
class Exported:
    out: Path
    manifest: dict                  # export.json: each format's file and its largest output difference
    trained: bool                   # False: no weights were given, the net is a random initialisation


def export_run(run_dir: str | None, *, spec_file: str | None = None, weights: str | None = None,
               out_dir: str | None = None, formats: str | None = None, atol: float = 1e-4,
               command: str = "") -> Exported:
    """Export RUN_DIR's net (its spec.json and model.pt, else pruned_model.pt), or `spec_file`'s
    (with `weights`, else untrained). Every check, of --out too, comes before any work."""
    fmts = parse_formats(formats)
    if not run_dir and not spec_file:  # an empty argument ('') is none
        raise ArchsearchError("give RUN_DIR (a run directory with spec.json and model.pt) or --spec FILE")
    rd = Path(run_dir) if run_dir else None
    if rd is not None and not rd.is_dir():
        raise ArchsearchError(f"run directory {rd} does not exist")
    spec_path = Path(spec_file) if spec_file else rd / "spec.json"
    if not spec_path.is_file():
        runs = sorted(str(p.parent) for p in rd.glob("*/spec.json"))[:3] if rd is not None and not spec_file else []
        raise ArchsearchError(f"no spec at {spec_path}" + (f"; runs inside it: {', '.join(runs)}" if runs else
                                                            " (is it a finished run? or pass --spec FILE)"))
    spec = ArchSpec.load(spec_path)
    out = Path(out_dir) if out_dir else (rd / "export" if rd is not None else Path("exports") / spec.name)
    destination(out, rd)  # every check of --out before reading weights or building anything
    if weights is None and rd is not None:
        found = [rd / n for n in ("model.pt", "pruned_model.pt") if (rd / n).is_file()]
        if not found:
            raise ArchsearchError(f"no model.pt in {rd}: the run has not finished (or pass --weights FILE)")
        weights = str(found[0])
    state = load_state(weights, "weights") if weights else None
    about = {"source": {"run_dir": str(rd) if rd else None, "spec": str(spec_path), "weights": weights},
             "command": command, **_training(rd)}
    man = export(spec, state, out, fmts, atol=atol, about=about, run_dir=rd)
    return Exported(out, man, state is not None)


def _training(rd: Path | None) -> dict:
    """What the run's result.json says about the preprocessing and the training, if it has one."""
    if rd is None or not (rd / "result.json").is_file():
        return {}
    res = load_result(rd / "result.json")
    return {"preprocess": res.preprocess,
            "training": {"data": res.data, "best_acc": res.best_acc, "final_acc": res.final_acc,
                         "epochs": res.epochs, "seed": res.seed, "date": res.date}}
