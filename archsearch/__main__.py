"""`python -m archsearch` (how `sweep run --workers N` starts its worker processes)."""

from .cli import main

main()
