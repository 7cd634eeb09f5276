"""The `archsearch` command line (click). The top of the import graph: nothing imports it.

One module per command (or group of commands), each thin: it parses its options, resolves
the config, calls one library function (`archsearch.workflows`, or the module it serves)
and prints. The sweep commands (`sweep`, `report`, `demo`) come from `archsearch.sweep.cli`.

Every bad input (an `ArchsearchError`, or a click usage error) ends as one line
`error: ...` on stderr and exit code 2; Ctrl-C ends with exit 130 and a hint on how to
resume. Heavy imports (torch) happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import signal
import sys
import threading

import click

from .. import __version__
from .. import redact as redaction  # `redaction.redact` is looked up when called (a test replaces it)
from .._io import os_error
from ..errors import ArchsearchError
from ..sweep.cli import register as register_sweeps
from . import data, export, extract, patterns, plot, profile, sensitivity, train, transfer


def _terminated(signum, frame):
    raise KeyboardInterrupt


class _Group(click.Group):
    """Every bad input ends as one line on stderr and exit 2, never a traceback. SIGTERM (a
    `kill`, `timeout`, a batch scheduler's preemption) stops a run as Ctrl-C does: checkpoints
    stay, a sweep's workers are stopped and their trials requeued."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = (signal.signal(signal.SIGTERM, _terminated), signal.getsignal(signal.SIGINT)) if main_thread else None
        try:
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except ArchsearchError as e:
                _fail(str(e))
            except OSError as e:  # a full or read-only disk, a path that is a file: the machine's, not a bug
                _fail(str(os_error(e, action="cannot use")))
            except MemoryError:
                _fail("out of memory: use a smaller width, batch or dataset, or a machine with more memory")
            except click.ClickException as e:  # usage errors: bad option values, unknown commands
                _fail(e.format_message() + _help_hint(e))
            except (KeyboardInterrupt, click.Abort):
                _interrupted()
        except KeyboardInterrupt:
            # a SIGTERM or Ctrl-C that lands while an error is being reported (torchrun stops the
            # other ranks of a failed run so): the process ends either way, and ends quietly
            _interrupted()
        finally:  # for callers in the same process (tests, notebooks): their handlers back
            if main_thread:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
        sys.exit(rv if isinstance(rv, int) else 0)


def _on_the_way_out() -> None:
    """Ignore further SIGTERM and Ctrl-C: the process is already ending, and a signal now
    would only turn its one-line message into a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupted() -> None:
    _on_the_way_out()
    click.echo("\ninterrupted; run the same command again to resume from the last checkpoint", err=True)
    sys.exit(130)


def _help_hint(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


def _fail(msg: str) -> None:
    _on_the_way_out()
    # one line, whatever the message holds (a multi-line library error), and never a password
    click.echo("error: " + " ".join(redaction.redact(msg).split()), err=True)
    sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="archsearch")
def cli() -> None:
    """archsearch: network pruning as architecture search.

    Pruners propose architectures; archsearch extracts their per-stage patterns, builds
    guided and transferred networks from them at matched budgets, and trains them from
    scratch (Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019, Sec. 5).

    \b
    Example:
      archsearch train vgg11-digits --preset tiny
    """


for _command in (train.train, extract.extract, sensitivity.sensitivity, patterns.patterns, transfer.transfer,
                 profile.profile, export.export_cmd, plot.plot, data.data):
    cli.add_command(_command)
register_sweeps(cli)


def main() -> None:
    cli(prog_name="archsearch")


__all__ = ["cli", "main"]
