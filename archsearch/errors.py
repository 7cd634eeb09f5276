"""The one exception type that means "the user asked for something we cannot do".

The CLI turns it into one line on stderr and exit code 2; anything else is a bug.
"""


class ArchsearchError(Exception):
    """Bad input: an unknown name, a malformed file, missing data, an impossible budget."""


class EnvironmentFailure(ArchsearchError):
    """Not the trial's doing: the machine failed (a full or read-only disk, no memory, a lost
    device, a killed process) or so did the data every trial reads (an undecodable file).

    A sweep stops at the first one (every later trial would fail the same way) and keeps the
    trial retryable: the next `archsearch sweep run` of the same spec retries it."""
