"""Optuna-managed sweeps: specs (`spec.py`), storages with heartbeats (`storage.py`), the
plan and its study (`plan.py`), the modes as strategy objects (`modes.py`: grid, search,
table), the points of grid and search sweeps (`points.py`), the worker loop (`runner.py`),
multi-process trials (`processes.py`), launching workers (`launch.py`), the table mode's arms,
artifacts and report (`table.py`), the numbers (`results.py`), and the commands (`cli.py`: options
only; `app.py`: what they do).

Import direction: sweep sits above compare/generate/train/patterns and below cli.
Inside it: cli -(when a command runs)-> app -> launch -> runner -> plan -> spec -> modes -> points,
table, results, processes, storage. `cli` imports only click and this module, so that
`archsearch --help` never loads optuna or torch.
"""

from __future__ import annotations

import re

from click.core import ParameterSource

from ..errors import ArchsearchError
from ..redact import redact

# Where every sweep command reads its storage URL when --storage is not given: a URL with a
# password belongs in the environment (readable by this user only), not on a command line.
STORAGE_ENV = "ARCHSEARCH_STORAGE"

# user[:password]@host[:port][/db] with no scheme: almost surely a database URL that lost its
# "postgresql://". Taken as a journal path it would create a folder named after the password
# and print it in every report, so it is refused before anything is created.
_USERINFO_HOST = re.compile(r"^(?:[^/\s@:]*:.*|[^/\s@:]+)@(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*)"
                            r"(?::[^/?#]*)?(?:[/?#].*)?$", re.S)


def check_storage(storage: str, source: str = "storage") -> str:
    """`storage` as given, unless it is `user[:pw]@host...` without a scheme (ArchsearchError,
    its password hidden). A journal file whose name holds '@' can be written ./PATH or file://PATH."""
    if "://" not in storage and _USERINFO_HOST.match(storage):
        raise ArchsearchError(f"{source} {redact(storage)} looks like a database URL without its scheme: write "
                              "postgresql://USER@HOST/DB (or mysql://...); a journal file whose name holds '@' "
                              "can be given as ./PATH or file://PATH")
    return storage


def storage_option(ctx, param, value: str | None) -> str | None:
    """click callback of every --storage option: `check_storage`, naming where the value came from."""
    if value is None:
        return None
    env = ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    return check_storage(value, f"${STORAGE_ENV}" if env else "--storage")
