"""`python -m archsearch.cli`: the same as the `archsearch` command."""

from . import main

main()
