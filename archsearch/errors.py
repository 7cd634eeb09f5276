"""The one exception type that means "the user asked for something we cannot do".

The CLI turns it into one line on stderr and exit code 2; anything else is a bug.
"""


class ArchsearchError(Exception):
    """Bad input: an unknown name, a malformed file, missing data, an impossible budget."""
