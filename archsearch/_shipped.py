"""Where files shipped with archsearch live: the repository's top-level folder of that
name (a source checkout or an editable install), or the copy that a regular install puts
under <prefix>/share/archsearch/ (setup.cfg's data_files; `pip install --user` included)."""

from __future__ import annotations

import site
import sys
from pathlib import Path


def repo_dir(name: str) -> Path | None:
    """`<repo>/name`, when archsearch runs from its source tree."""
    p = Path(__file__).resolve().parent.parent / name
    return p if p.is_dir() and (p.parent / "setup.cfg").exists() else None


def installed_dir(name: str) -> Path | None:
    """`<prefix>/share/archsearch/name`, for a non-editable install."""
    for prefix in (sys.prefix, site.getuserbase()):
        p = Path(prefix) / "share" / "archsearch" / name
        if p.is_dir():
            return p
    return None
