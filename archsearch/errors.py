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


def clip(text: object, limit: int = 240) -> str:
    """The first line of a message (a library's, a child process's), whole if it fits in `limit`
    characters; else cut after the last sentence or clause that fits, and marked "...": a
    reader sees where it was cut and never half a sentence passed off as whole."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    if len(line) <= limit:
        return line
    head = line[:limit - 4]
    for seps in ((". ", "; ", "? ", "! "), (", ", ": ", " (", " - ")):  # sentences first, then clauses
        cut = max(head.rfind(s) for s in seps)
        if cut >= limit // 3:
            return head[:cut + 1].rstrip(" ,:(-") + " ..."
    cut = head.rfind(" ")  # one long clause: at a word, at least
    return (head[:cut] if cut >= limit // 3 else head) + " ..."
