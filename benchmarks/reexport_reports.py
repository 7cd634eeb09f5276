"""Re-export every committed sweep report from its Optuna journal, in place.

    python benchmarks/reexport_reports.py [--no-png] [FOLDER ...]

A committed sweep result is a folder under benchmarks/results/ holding `optuna-journal.log`
and `report.json`. For each (or the FOLDERs named), a copy of the journal is opened read-only
and the report is written with today's code, by the function `archsearch report` uses
(`sweep.app.write_outputs`): report.md/.csv/.json, trials.* (grid and search sweeps) and the
HTML figure (efficiency.html, or table.html for a table), plus the PNG where one was
committed (headless Chromium renders it). The recorded command in the reports is written
with the work folder's relative paths (`sweep.plan.portable_command`). A file is replaced
only when its content changed (plotly's random element ids aside), and each one replaced is
printed, so a second run rewrites nothing. The journals themselves are never written.

Run it from any checkout after a change to the report format, then commit what it rewrote;
tests/test_committed_results.py fails until the committed reports equal their re-export.
"""

from __future__ import annotations

import argparse
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import optuna

from archsearch.errors import ArchsearchError
from archsearch.plot import find_browser, render_png
from archsearch.sweep.app import write_outputs
from archsearch.sweep.plan import load_study, portable_command
from archsearch.sweep.storage import JOURNAL_NAME, open_storage

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]

# The folder each committed sweep ran in, against which an absolute path in its recorded
# command is made relative: the project's checkout on the CPU box (the table plans' artifact
# stores are /work/main/runs/..., and the grids' `--data-dir ../shared/data` resolved to
# /work/shared/data), except the PreResNet-29 sweep, run from a clone in /tmp/bench (its
# trials' run_dir). Keyed by study name. A plan made since issue 29 records its command
# relative already, and `portable_command` leaves such a command as it is; so these matter
# only for the old ones, and the re-export is the same wherever it runs.
DEFAULT_RAN_IN = "/work/main"
RAN_IN = {"guided-preresnet164-c10-reduced": "/tmp/bench"}

_PLOTLY_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def committed_studies(root: Path = RESULTS) -> list[Path]:
    """The committed sweep results under `root`: folders with a journal and a report.json."""
    return sorted(p.parent for p in root.rglob(JOURNAL_NAME) if (p.parent / "report.json").is_file())


def open_committed(folder: Path, tmp: Path):
    """(study, plan) of a committed result, read from a read-only copy of its journal in `tmp`
    (a storage is opened with write access; the committed file is never handed to it). The
    plan's recorded command gets the work folder's relative paths, as a new plan records it."""
    copy = tmp / JOURNAL_NAME
    shutil.copyfile(folder / JOURNAL_NAME, copy)
    copy.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    names = optuna.study.get_all_study_names(open_storage(str(copy), create=False))
    if len(names) != 1:
        raise ArchsearchError(f"{folder / JOURNAL_NAME} holds {len(names)} studies; a committed result holds one")
    study, plan = load_study(str(copy), names[0])
    if plan.get("command"):
        plan = {**plan, "command": portable_command(plan["command"], RAN_IN.get(names[0], DEFAULT_RAN_IN))}
    return study, plan


def export(folder: Path, out: Path) -> None:
    """Write the report of the committed result in `folder` to `out`, as `archsearch report` would."""
    with tempfile.TemporaryDirectory(prefix="reexport-") as tmp:
        study, plan = open_committed(folder, Path(tmp))
        write_outputs(study, plan, out, x=plan["spec"]["by"])


def _same(a: Path, b: Path) -> bool:
    """Equal files; HTML figures equal but for plotly's random element ids."""
    if not b.is_file():
        return False
    x, y = a.read_bytes(), b.read_bytes()
    if a.suffix == ".html":
        x, y = _PLOTLY_ID.sub(b"ID", x), _PLOTLY_ID.sub(b"ID", y)
    return x == y


def reexport(folder: Path, png: bool, say=print) -> list[Path]:
    """Re-export one committed result in place; returns the files it replaced."""
    changed = []
    with tempfile.TemporaryDirectory(prefix="reexport-out-") as tmp:
        out = Path(tmp)
        export(folder, out)
        for new in sorted(out.iterdir()):
            target = folder / new.name
            if _same(new, target):
                continue
            pic = target.with_suffix(".png")
            if new.suffix == ".html" and pic.is_file() and not png:  # a figure and its picture stay one pair
                say(f"kept {_shown(target)} and {_shown(pic)} (--no-png); they differ from the re-export")
                continue
            shutil.copyfile(new, target)
            changed.append(target)
            if new.suffix == ".html" and pic.is_file():
                render_png(target, pic)
                changed.append(pic)
    for p in changed:
        say(f"rewrote {_shown(p)}")
    return changed


def _shown(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def _folders(names: list[str]) -> list[Path]:
    if not names:
        return committed_studies()
    folders = [Path(n).resolve() for n in names]
    for f in folders:
        if not (f / JOURNAL_NAME).is_file() or not (f / "report.json").is_file():
            raise ArchsearchError(f"{f} is not a committed sweep result (it needs {JOURNAL_NAME} and report.json)")
    return folders


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", help="result folders (default: every one under benchmarks/results)")
    ap.add_argument("--no-png", action="store_true",
                    help="keep each committed figure that has a PNG (html and png) as it is: no Chromium needed")
    a = ap.parse_args(argv)
    try:
        folders = _folders(a.folders)
        if not a.no_png and any(any(f.glob("*.png")) for f in folders) and find_browser() is None:
            raise ArchsearchError("the committed PNGs are re-rendered with headless Chromium, and none was found "
                                  "(apt install chromium, or set ARCHSEARCH_CHROMIUM; or pass --no-png)")
        n = sum(len(reexport(f, png=not a.no_png)) for f in folders)
    except ArchsearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n} file(s) rewritten in {len(folders)} result folder(s)" if n else
          f"nothing rewritten: the reports of {len(folders)} result folder(s) equal their re-export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
