"""A torchvision model's layers at any widths, without building it: a per-layer table traced once.

The budget solver counts dozens of candidate nets; building and narrowing a torchvision module
for each took 35 ms a count for MobileNetV2, most of a transfer's time. But every size the
counters read is affine in the channel groups' widths and the class count: a conv's input and
output channels, a BN's features, a linear layer's inputs and outputs, an activation's elements,
a pool's channels. Narrowing a group by one channel removes, from each layer it reaches, the
same number of entries whatever the other widths are: Torch-Pruning's dependency graph maps a
group's channel through concatenations (one entry), flattening (one per pixel) and residual
adds by index, and archsearch narrows with that same graph (`TorchvisionFamily._narrowed`).

So the table is made from the full-width model and its graph, once per (model, input size):
- a conv's, BN's or linear layer's sizes: per group, how many entries of which dimension the
  group's last channel removes (`DependencyGraph.get_pruning_group`, nothing pruned);
- an activation's or pool's: the channels of the tensor it reads, followed through one eval
  forward (module hooks, and a `TorchFunctionMode` for what runs outside modules: a
  concatenation along channels sums its inputs' channels, any other op keeps those of an input
  with as many channels);
- the classifier's outputs, and what reads them (SqueezeNet's final ReLU and pool): the class
  count.
A model with a layer whose input channels cannot be followed gets no table (None): its counts
build the module, as before. tests/test_fast_count.py checks the table against the built,
narrowed module layer by layer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

from .base import Op

Terms = tuple[tuple[int, int], ...]  # (variable index, entries per unit); the class count is the last variable
BASE_CLASSES = 10  # the class count the table's model is built with


@dataclass(frozen=True)
class Size:
    """One layer size: `base` at full width, plus `per` entries for each unit a variable moves."""

    base: int
    terms: Terms = ()

    def at(self, delta: tuple[int, ...]) -> int:
        return self.base + sum(per * delta[k] for k, per in self.terms)


@dataclass(frozen=True)
class Row:
    """One counted layer (in execution order), its sizes affine in the variables."""

    name: str
    op: Op     # at full width and BASE_CLASSES
    cin: Size
    cout: Size

    def at(self, delta: tuple[int, ...]) -> Op:
        op = self.op
        return Op(op.kind, self.cin.at(delta), self.cout.at(delta), op.hw, op.k, bias=op.bias, depthwise=op.depthwise)


@dataclass(frozen=True)
class Table:
    bases: tuple[int, ...]  # each group's full width, then BASE_CLASSES
    rows: tuple[Row, ...]

    def ops(self, widths: tuple[int, ...], num_classes: int) -> list[tuple[str, Op]]:
        """Every counted layer of the net at `widths` with `num_classes` outputs: (name, op)."""
        delta = tuple(v - b for v, b in zip((*widths, num_classes), self.bases))
        return [(r.name, r.at(delta)) for r in self.rows]


def _terms(counts: dict[int, int]) -> Terms:
    return tuple(sorted((k, v) for k, v in counts.items() if v))


def _group_terms(model: nn.Module, dg, groups: list[tuple[str, int]]) -> tuple[dict, dict]:
    """Per module: the entries of its output and of its input dimension that one channel of each
    group removes, {module: {group index: entries}}, from the groups Torch-Pruning would prune."""
    names = {m: n for n, m in model.named_modules()}
    outs: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    ins: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for k, (gname, base) in enumerate(groups):
        if base < 2:
            continue  # a group of one channel keeps it: its width never moves
        pg = dg.get_pruning_group(model.get_submodule(gname), tp.prune_conv_out_channels, idxs=[base - 1])
        for it in pg:
            m, h = it.dep.target.module, it.dep.handler
            if m not in names:
                continue  # an op outside modules (a concatenation, a flatten): the tensors it joins carry it
            if dg.is_out_channel_pruning_fn(h):
                outs[names[m]][k] += len(it.idxs)
            elif dg.is_in_channel_pruning_fn(h):
                ins[names[m]][k] += len(it.idxs)
    return outs, ins


class _Unfollowed(Exception):
    """A layer reads a tensor whose channels the trace cannot follow."""


def _cat_dim(args: tuple, kwargs: dict) -> int:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    return dim if isinstance(dim, int) else -1


class _Channels(TorchFunctionMode):
    """Follows the channels (dimension 1) of every tensor made outside the hooked modules."""

    def __init__(self, terms: dict[int, Terms], held: list):
        super().__init__()
        self.terms, self.held = terms, held

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or id(out) in self.terms:
            return out
        flat = [a for x in (*args, *kwargs.values()) for a in (x if isinstance(x, (list, tuple)) else [x])]
        tensors = [a for a in flat if isinstance(a, torch.Tensor) and a.dim() == out.dim()]
        if func is torch.cat and _cat_dim(args, kwargs) % out.dim() == 1:
            parts = [self.terms.get(id(t)) for t in tensors]
            if all(p is not None for p in parts):
                summed: dict[int, int] = defaultdict(int)
                for p in parts:
                    for k, v in p:
                        summed[k] += v
                self._set(out, _terms(summed))
            return out
        same = next((t for t in tensors if t.shape[1] == out.shape[1] and id(t) in self.terms), None)
        if same is not None:
            self._set(out, self.terms[id(same)])
        return out

    def _set(self, t: torch.Tensor, terms: Terms) -> None:
        self.held.append(t)  # held until the trace ends, so that no other tensor reuses its id
        self.terms[id(t)] = terms


def _row(name: str, m: nn.Module, op: Op, x: torch.Tensor, channels: _Channels, outs: dict,
         ins: dict) -> tuple[Row, Terms]:
    """The row of one counted layer and the channel terms of its output."""
    if op.kind in ("conv", "bn", "linear"):
        # a BN's or a depthwise conv's channels pass through it: Torch-Pruning may name them either side
        through = op.kind == "bn" or (isinstance(m, nn.Conv2d) and m.groups > 1)
        out = _terms(outs.get(name, {}) or (ins.get(name, {}) if through else {}))
        # a depthwise (or grouped) conv's weight reads a fixed number of inputs per output
        cin = out if op.kind == "bn" else () if through else _terms(ins.get(name, {}))
        return Row(name, op, Size(op.cin, cin), Size(op.cout, out)), out
    if id(x) not in channels.terms:
        raise _Unfollowed(name)
    terms = channels.terms[id(x)]
    per = op.cout // x.shape[1] if op.kind == "relu" else 1  # an activation counts elements: channels x pixels
    scaled = tuple((k, v * per) for k, v in terms)
    return Row(name, op, Size(op.cin, scaled), Size(op.cout, scaled)), terms


def table(model: nn.Module, dg, groups: list[tuple[str, int]], classifier: str, size: int,
          layer_of: Callable[[str, nn.Module, torch.Tensor, torch.Tensor], Op | None]) -> Table | None:
    """The table of `model` (full width, BASE_CLASSES classes) and its dependency graph `dg`:
    `groups` are (maker conv, full width) in the spec's order; `layer_of` says which counted
    layer a leaf module is (None: no work), as the module-built count sees it. None when some
    layer's input channels cannot be followed (the module docstring)."""
    outs, ins = _group_terms(model, dg, groups)
    outs = {**outs, classifier: {len(groups): 1}}
    names = {m: n for n, m in model.named_modules()}
    terms: dict[int, Terms] = {}
    held: list = []
    rows: list[Row] = []
    channels = _Channels(terms, held)

    def hook(m, inp, out):
        op = layer_of(names[m], m, inp[0], out)
        if op is not None:
            row, t = _row(names[m], m, op, inp[0], channels, outs, ins)
            rows.append(row)
            held.append(out)
            terms[id(out)] = t

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was = model.training
    try:
        model.eval()
        x = torch.zeros(1, 3, size, size)
        held.append(x)
        terms[id(x)] = ()
        with torch.no_grad(), channels:
            model(x)
    except _Unfollowed:
        return None
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return Table(tuple(b for _, b in groups) + (BASE_CLASSES,), tuple(rows))
