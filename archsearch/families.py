"""The architecture family registry: family name -> family object.

It sits below `archsearch.spec` so that a spec can ask its family for what its JSON holds
(the channel groups' names, and for schema 1 the VGG's conv names) without `spec` importing
`archsearch.archs`, which builds on `spec`: the families themselves (`archs.base.Family` and
its subclasses) register here when `archsearch.archs` is imported (which the first lookup
does, if nothing has yet: a spec loaded on its own).

What `spec` needs of a family is `SpecLayout`; `archs.base.Family` gives more.
"""

from __future__ import annotations

import importlib
from typing import Protocol, Sequence, TypeVar

from .errors import ArchsearchError


class _Named(Protocol):
    name: str


class SpecLayout(Protocol):
    """What `ArchSpec`'s JSON needs of a family: its channel groups' names (in the spec's
    group order) and, for schema-1 VGG files, its convs' module names in layer order."""

    def groups(self, spec) -> Sequence[_Named]: ...

    def conv_names(self, depth: int) -> list[str]: ...


FAMILIES: dict[str, SpecLayout] = {}
# families made on first use from a name with a prefix (`tv.resnet18`: archs/tv.py), by a
# function named "module:function", imported only then: torchvision and torch_pruning, which
# archs/tv.py needs, take 1.3 s to import (of 2.6 s for `import archsearch.train`, measured),
# and most runs never name a torchvision model
PREFIXES: dict[str, str] = {}
BUILT_IN = "archsearch.archs"  # the module whose import registers the built-in families

T = TypeVar("T", bound=type)


def register_family(cls: T) -> T:
    """Class decorator: register one instance of a family under its `name`."""
    FAMILIES[cls.name] = cls()
    return cls


def register_prefix(prefix: str, make: str) -> None:
    """Families named `prefix` + something, made by the function `make` ("module:function")
    from the something when first asked for."""
    PREFIXES[prefix] = make


def get_family(name: str):
    for prefix, make in PREFIXES.items():
        if name.startswith(prefix):
            module, _, function = make.partition(":")
            return getattr(importlib.import_module(module), function)(name[len(prefix):])
    if not FAMILIES:  # a spec used before anything imported the families (`ArchSpec.load` alone)
        importlib.import_module(BUILT_IN)
    try:
        return FAMILIES[name]
    except KeyError:
        raise ArchsearchError(f"unknown architecture family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
