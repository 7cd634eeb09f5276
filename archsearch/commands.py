"""What a recorded command says (issue 29): the command that made a report, a pattern or an
export is written down with every absolute path in it made relative to the folder it ran in,
so that a committed file names the work folder's paths (`../shared/data`, `runs/x`), never one
machine's home or temporary folders. Credentials are `redact`'s; callers redact first."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

# how a storage URL names a file: a journal's file://PATH and SQLite's sqlite:///PATH
_FILE_URLS = ("file://", "sqlite:///")


def _portable_path(arg: str, cwd: str) -> str:
    """`arg` relative to `cwd` if it is an absolute path (or a file URL or option value holding
    one); any other argument as it is."""
    if arg.startswith("-") and "=" in arg:  # --option=VALUE
        opt, _, value = arg.partition("=")
        return f"{opt}={_portable_path(value, cwd)}"
    for scheme in _FILE_URLS:
        if arg.startswith(scheme) and os.path.isabs(arg[len(scheme):]):
            return scheme + _portable_path(arg[len(scheme):], cwd)
    if not os.path.isabs(arg):
        return arg
    try:
        return os.path.relpath(arg, cwd)
    except ValueError:  # another drive (Windows): no relative form
        return arg


def portable_command(command: str, cwd: str | os.PathLike | None = None) -> str:
    """The command as a new plan records it, which reports and figure captions show: every
    absolute path in it (an argument, an option's `=VALUE`, a file:// or sqlite:/// URL) made
    relative to the folder the command ran in (`cwd`, default the current one), so that a
    committed report names the work folder's paths (`../shared/data`, `runs/x`), never one
    machine's home or temporary folders (issue 29). The same command typed in that folder does
    the same. A command that does not split as shell words is split at white space."""
    cwd = os.fspath(cwd if cwd is not None else Path.cwd())
    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote
        return " ".join(_portable_path(w, cwd) for w in command.split())
    return shlex.join(_portable_path(w, cwd) for w in words)


__all__ = ["portable_command"]


def typed_command(name: str, fallback: str) -> str:
    """The command as typed (`archsearch NAME ...` from this process's argv), its paths made
    portable; `fallback` where this process was not started as that command (e.g. a test's runner)."""
    typed = sys.argv[1:2] == [name]
    return portable_command("archsearch " + shlex.join(sys.argv[1:]) if typed else fallback)
