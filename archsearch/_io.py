"""Files in and out, in one place.

Out: atomic writes (a reader never sees half a file, and a crash never loses the old
one); an `OSError` while writing (a full or read-only disk) becomes one
`EnvironmentFailure` line naming the path.

In: files a user or another machine hands us are data. `read_bytes` reads regular files
only (a FIFO or a link to /dev/zero would hang or never end) up to a size limit;
`read_json` and `read_toml` turn every way a file can be malformed (not UTF-8, not
JSON, nested too deep) into one `ArchsearchError` line; `load_torch` reads checkpoints
and weights the same way and unpickles them as data only. What the data must look like is
checked by the format's schema (`archsearch.schemas`).

Also: `check_name` (a name that becomes a file name is a plain name) and `RunLock` (one
process per run folder).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import tempfile
import time
import tomllib
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import ArchsearchError, EnvironmentFailure, clip

MiB = 1 << 20
DEFAULT_LIMIT = 64 * MiB  # patterns, results, sweep specs, studies' plans: far below this


def os_error(e: OSError, path: str | os.PathLike | None = None, action: str = "cannot write") -> EnvironmentFailure:
    """One line for an OSError at `path`: what, where, why (e.g. 'No space left on device')."""
    where = path if path is not None else (e.filename or "")
    why = e.strerror or str(e) or type(e).__name__
    return EnvironmentFailure(f"{action} {where}: {why}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.
    The old file stays untouched until then; an OSError becomes an `EnvironmentFailure`. The
    new file's bytes reach the disk before the rename (and the rename before the return), so
    a power loss leaves the old file or the new one, never an empty one."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        raise os_error(e, path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): the rename stands anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    """The process umask, read once at import: reading it means setting it, and setting it
    while another thread (the sweep's heartbeat) writes files would race that thread."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def make_dirs(path: str | os.PathLike) -> Path:
    """mkdir -p, with an OSError (a file in the way, a read-only disk) as one line."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, p, "cannot create folder") from None
    return p


def write_json(path: str | os.PathLike, obj: Any) -> None:
    # allow_nan=False: NaN is not JSON; a NaN here is a bug upstream, not something to write down
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch  # start-up cost: `archsearch --help` imports this module; torch takes 2-3 s

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch wraps a failed write (e.g. a full disk) in a RuntimeError
            raise EnvironmentFailure(f"cannot write {path}: {str(e).splitlines()[0]}") from None


# -- torch files in: checkpoints and weights ------------------------------------------------------
GiB = 1 << 30
TORCH_LIMIT = 8 * GiB  # far above any net here (VGG-19 on ImageNet with its momentum is ~1.1 GB)
TORCH_LIMIT_ENV = "ARCHSEARCH_MAX_TORCH_GIB"


def torch_limit() -> int:
    """The size limit of a checkpoint or weights file: `TORCH_LIMIT`, or $ARCHSEARCH_MAX_TORCH_GIB."""
    v = os.environ.get(TORCH_LIMIT_ENV, "").strip()
    if not v:
        return TORCH_LIMIT
    try:
        gib = float(v)
    except ValueError:
        gib = float("nan")
    if not 0 < gib <= 1024:  # NaN fails too
        raise ArchsearchError(f"${TORCH_LIMIT_ENV} is {v!r}: give a size in GiB, more than 0 and at most 1024")
    return int(gib * GiB)


def load_torch(path: str | os.PathLike, what: str = "checkpoint", *, map_location: Any = "cpu",
               limit: int | None = None, hint: str = "") -> Any:
    """A file written by `torch.save`, loaded as data. It is read whole by `read_bytes` (a
    regular file within the size limit: a FIFO or a device cannot hang or flood us), then
    unpickled by torch's restricted loader (`weights_only`), which builds tensors, numbers,
    strings and containers and nothing else, so a crafted file cannot run code. Anything
    else is one line naming the file and saying what it is not (`hint` says what to do);
    never torch's advice to load it unsafely."""
    import torch  # start-up cost: `archsearch --help` imports this module; torch takes 2-3 s

    data = read_bytes(path, what, torch_limit() if limit is None else limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on pickle protocols would be a second line
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the machine's, not the file's
    except Exception as e:  # noqa: BLE001  a damaged or hostile file is bad input, not a bug
        why = _not_torch(data, str(e))
    raise ArchsearchError(f"cannot read {what} {path}: {why}" + (f"; {hint}" if hint else ""))


def _not_torch(data: bytes, text: str) -> str:
    """What a file that torch's restricted loader refused is not (torch's own text suggests
    `weights_only=False`, which would run whatever the file holds)."""
    if not data:
        return "empty, not a PyTorch checkpoint"
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found or "Unsupported operand" not in text:
            named = f" ({found.group(1)})" if found else ""
            return f"it holds objects other than tensors and plain data{named}; refused, no code was run"
        if data[:1] == b"\x80":  # a pickle's PROTO opcode: a pickle torch's loader does not read
            return "not a PyTorch checkpoint (a pickle of some other kind); refused, no code was run"
    if data[:2] == b"PK" and "central directory" not in text:
        return "not a PyTorch checkpoint (a zip archive that torch.save did not write)"
    return "not a PyTorch checkpoint (truncated or corrupt)"


def load_state(path: str | os.PathLike, what: str = "weights", *, hint: str = "") -> dict:
    """A state dict (a non-empty dict of named tensors) from a torch file, by `load_torch`;
    of a checkpoint, its "model" entry."""
    import torch  # start-up cost: `archsearch --help` imports this module; torch takes 2-3 s

    state = load_torch(path, what, hint=hint)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ArchsearchError(f"{what} {path} is not a state dict (a dict of named tensors, like model.pt)"
                              + (f"; {hint}" if hint else ""))
    return state


# -- reading ------------------------------------------------------------------------------------
def too_large(what: str, where: str | os.PathLike, size: int, limit: int) -> ArchsearchError:
    """The line for a file (or an archive member) refused for its size."""
    return ArchsearchError(f"cannot read {what} {where}: {size:,} bytes, more than the {limit:,} allowed")


def open_regular(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> BinaryIO:
    """An open binary file, or one ArchsearchError line when `path` is not a regular file (a
    FIFO would block the open and every read, a device never end) or, with `limit`, is larger."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # O_NONBLOCK: a FIFO cannot hang the open
    except OSError as e:
        raise ArchsearchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArchsearchError(f"cannot read {what} {path}: not a regular file")
        if limit is not None and st.st_size > limit:
            raise too_large(what, path, st.st_size, limit)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")  # O_NONBLOCK changes nothing for a regular file


def read_bytes(path: str | os.PathLike, what: str = "file", limit: int = DEFAULT_LIMIT) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one ArchsearchError line."""
    p = Path(path)
    with open_regular(p, what, limit) as f:
        chunks, n = [], 0
        try:
            # in chunks: a read of `limit` bytes at once would allocate all of them (8 GiB for weights)
            while chunk := f.read(1 << 20):
                n += len(chunk)
                if n > limit:  # the file grew while we read it
                    raise ArchsearchError(f"cannot read {what} {p}: more than the {limit:,} bytes allowed")
                chunks.append(chunk)
        except OSError as e:
            raise ArchsearchError(f"cannot read {what} {p}: {e.strerror or e}") from None
    return b"".join(chunks)


def read_text(path: str | os.PathLike, what: str = "file", limit: int = DEFAULT_LIMIT) -> str:
    try:
        return read_bytes(path, what, limit).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchsearchError(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON text as data, with NaN/Infinity refused (they are not JSON) and deep nesting caught."""
    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise ArchsearchError(f"{where}: nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ArchsearchError(f"{where}: not UTF-8 text ({e.reason})") from None
    except ValueError as e:  # JSONDecodeError and the NaN refusal
        raise ArchsearchError(f"{where}: not valid JSON ({e})") from None


def read_json(path: str | os.PathLike, what: str = "file", limit: int = DEFAULT_LIMIT) -> Any:
    return parse_json(read_text(path, what, limit), f"{what} {path}")


def read_toml(path: str | os.PathLike, what: str = "file", limit: int = DEFAULT_LIMIT) -> dict:
    text = read_text(path, what, limit)
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ArchsearchError(f"{what} {path}: nested too deeply") from None
    except ValueError as e:  # TOMLDecodeError, and the plain ValueError of an integer too long to convert
        raise ArchsearchError(f"{path} is not valid TOML: {clip(e, 200)}") from None


def is_regular_file(path: str | os.PathLike, limit: int | None = None) -> bool:
    """True for a regular file (following links), with `limit` of at most that many bytes: what
    a library or folder scan may read, or a cache may memory-map."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (limit is None or st.st_size <= limit)


# -- names -------------------------------------------------------------------------------------
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str = "name") -> str:
    """A name that becomes a file or folder name: letters, digits, '-', '_', '.'; it starts
    with a letter or digit (so never '..', '.hidden' or '-flag'); at most 128 characters."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ArchsearchError(f"{what} {name!r} is not a plain name: use letters, digits, '-', '_' and '.', "
                              "starting with a letter or digit (no '/' and no '..')")
    return name


# -- one process per run folder ----------------------------------------------------------------
class RunInUse(EnvironmentFailure):
    """A run folder locked by another live process."""

    def __init__(self, msg: str, folder: Path):
        super().__init__(msg)
        self.folder = folder


@contextmanager
def file_lock(path: Path, *, wait: float | None, busy) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing): at once (`wait` 0), polled for
    up to `wait` seconds (interruptible, and it gives up), or for as long as it takes (None).
    While another process holds it past the wait, `busy()` is raised. The kernel drops the
    lock when its holder dies, so a killed process never leaves a stale one behind."""
    import fcntl  # Unix only: elsewhere locking fails, not every command that reads a file

    make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise os_error(e, path) from None
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise os_error(e, path, "cannot lock") from None
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing drops the flock


class RunLock:
    """An exclusive lock on a run folder (`DIR/.lock`): a second process that tries to use the
    same folder gets one clear line instead of silently replacing the first one's results
    (`wait`: it waits for the folder instead)."""

    def __init__(self, folder: str | os.PathLike, what: str = "run folder", wait: bool = False):
        self.folder, self.what, self.wait, self._held = Path(folder), what, wait, None

    def __enter__(self) -> "RunLock":
        def busy() -> RunInUse:  # not the input's fault: a sweep keeps such a trial for a retry
            return RunInUse(f"{self.what} {self.folder} is in use by another archsearch process; wait for it, "
                            "or pass another --out", self.folder)

        self._held = file_lock(self.folder / ".lock", wait=None if self.wait else 0.0, busy=busy)
        self._held.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(None, None, None)
