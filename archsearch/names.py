"""The one parser of the names users type.

- target   `ARCH-DATA`         e.g. `vgg16-c10`, `vgg19-c100`, `vgg11-digits`
- proposer `METHOD-ARCH-DATA[.VARIANT]`  e.g. `slimming-vgg16-c10`, `magnitude-vgg16-c10`,
  `l1norm-resnet56-c10.A` (a method's named configuration, e.g. Li et al.'s ResNet-56-A)
Architectures come from the family registry (`archs`), datasets from `data`; methods
from the proposer registry, passed in by the caller so this module stays at the bottom.
A dataset says which networks its arch names mean (`DatasetInfo.nets`): `vgg16-c10` is the
CIFAR VGG-16, `vgg16-in` the ImageNet one (family `invgg`), `resnet50-in` torchvision's
ResNet-50 (`inresnet`); `archs.parse_arch` reads the name under the dataset's nets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .archs import family_base, parse_arch
from .data import get_info, known_names
from .errors import ArchsearchError
from .spec import ArchSpec


@dataclass(frozen=True)
class Target:
    arch: str        # as typed, e.g. vgg16 (the ImageNet VGG-16 when data is `in`)
    family: str      # the family it resolved to, e.g. vgg or invgg
    depth: int
    data: str        # e.g. c10
    num_classes: int
    input_size: int = 32  # the dataset's image side (a registered folder's --size)

    def __str__(self) -> str:
        return f"{self.arch}-{self.data}"

    @property
    def spec_name(self) -> str:
        """The network's own name, family + depth (`ArchSpec.name`, what patterns record as
        their arch): `invgg16` for `vgg16-in`, `vgg16` for `vgg16-c10`."""
        return self.family if self.depth == 0 else f"{self.family}{self.depth}"  # depth 0: tv.X

    def base_spec(self, width: float = 1.0) -> ArchSpec:
        """The unpruned network this target names, at width multiplier `width` and the dataset's
        classes and image size: the family the parser resolved is the one built."""
        return family_base(self.family, self.depth, self.num_classes, width, input_size=self.input_size)


@dataclass(frozen=True)
class ProposerName:
    method: str
    target: Target
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.method}-{self.target}" + (f".{self.variant}" if self.variant else "")


def parse_target(name: str) -> Target:
    parts = name.strip().split("-")
    if len(parts) != 2 or not all(parts):
        raise ArchsearchError(f"target {name!r} is not ARCH-DATA, e.g. vgg16-c10 or vgg11-digits "
                              f"(datasets: {', '.join(known_names())})")
    arch, data = parts
    info = get_info(data)
    fam, depth = parse_arch(arch, info.nets)
    return Target(arch=arch, family=fam.name, depth=depth, data=data, num_classes=info.num_classes,
                  input_size=info.input_size)


def split_proposer(name: str) -> tuple[str, Target, str | None]:
    """'l1norm-resnet56-c10.A' -> ('l1norm', Target(resnet56, c10), 'A'), the method unchecked."""
    method, sep, rest = name.strip().partition("-")
    if not sep:
        raise ArchsearchError(f"proposer {name!r} is not METHOD-ARCH-DATA, e.g. slimming-vgg16-c10")
    arch, dash, data = rest.partition("-")  # an arch may hold a '.' (tv.resnet18); a dataset name never does
    data, dot, variant = data.partition(".")
    rest = f"{arch}{dash}{data}"
    if dot and not (variant.isascii() and variant.isalnum()):
        raise ArchsearchError(f"variant {variant!r} in {name!r} is not a plain name of letters and digits (e.g. A)")
    return method, parse_target(rest), variant or None


# Other names of a method that users meet in the literature and in DESIGN.md: He et al. 2017's
# channel pruning is "LASSO regression" (`lasso`); the canonical name is what runs and records use.
METHOD_ALIASES = {"lasso": "regression"}


def parse_proposer(name: str, methods: Iterable[str]) -> ProposerName:
    methods = list(methods)
    method, target, variant = split_proposer(name)
    method = METHOD_ALIASES.get(method, method)
    if method not in methods:
        raise ArchsearchError(f"unknown pruning method {method!r} in {name!r}; known: {', '.join(methods)}")
    return ProposerName(method=method, target=target, variant=variant)
