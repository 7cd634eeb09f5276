"""The one exception type that means "the user asked for something we cannot do".

The CLI turns it into one line on stderr and exit code 2; anything else is a bug.
"""


class ArchsearchError(Exception):
    """Bad input: an unknown name, a malformed file, missing data, an impossible budget."""


class EnvironmentFailure(ArchsearchError):
    """The machine, not the input, failed: a full or read-only disk, no memory, a lost device.

    A sweep stops at the first one (every later trial would fail the same way) and keeps
    the trial retryable (`archsearch sweep run --retry-failed`)."""
