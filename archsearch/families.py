"""The architecture family registry: family name -> family object.

It sits below `archsearch.spec` so that a spec can ask its family for what its JSON holds
(the channel groups' names, and for schema 1 the VGG's conv names) without `spec` importing
`archsearch.archs`, which builds on `spec`: the families themselves (`archs.base.Family` and
its subclasses) register here when `archsearch.archs` is imported, and every module that
makes a spec imports `archsearch.archs` first (a spec is made by a family's `base`).

What `spec` needs of a family is `SpecLayout`; `archs.base.Family` gives more.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, TypeVar

from .errors import ArchsearchError


class _Named(Protocol):
    name: str


class SpecLayout(Protocol):
    """What `ArchSpec`'s JSON needs of a family: its channel groups' names (in the spec's
    group order) and, for schema-1 VGG files, its convs' module names in layer order."""

    def groups(self, spec) -> Sequence[_Named]: ...

    def conv_names(self, depth: int) -> list[str]: ...


FAMILIES: dict[str, SpecLayout] = {}
# families made on first use from a name with a prefix (`tv.resnet18`: archs/tv.py)
PREFIXES: dict[str, Callable[[str], SpecLayout]] = {}

T = TypeVar("T", bound=type)


def register_family(cls: T) -> T:
    """Class decorator: register one instance of a family under its `name`."""
    FAMILIES[cls.name] = cls()
    return cls


def register_prefix(prefix: str, make: Callable[[str], SpecLayout]) -> None:
    """Families named `prefix` + something, made by `make(something)` when first asked for."""
    PREFIXES[prefix] = make


def get_family(name: str):
    for prefix, make in PREFIXES.items():
        if name.startswith(prefix):
            return make(name[len(prefix):])
    if not FAMILIES:  # a programming error, not bad input: nothing imported archsearch.archs
        raise RuntimeError("no architecture family is registered: import archsearch.archs first")
    try:
        return FAMILIES[name]
    except KeyError:
        raise ArchsearchError(f"unknown architecture family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
