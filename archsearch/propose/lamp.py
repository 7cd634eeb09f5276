"""LAMP: layer-adaptive magnitude-based pruning (Lee et al., ICLR 2021).

Train the base net plainly, score every conv weight by its LAMP score (with the layer's
weights sorted ascending by magnitude, w_u^2 / sum_{v >= u} w_v^2: `importance.lamp_scores`),
and prune by one global threshold on the scores. Unlike one global |w| threshold, the scores
are comparable across layers, so no layer is emptied by being small in scale: each layer
gets its own sparsity. The proposal is a sparsity pattern like magnitude pruning's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..spec import ArchSpec
from .base import Pruned, Proposer, Settings, register_proposer
from .importance import lamp
from .magnitude import Magnitude, masked_proposal, score_masks
from .options import Options, default


@dataclass(frozen=True)
class LampOptions(Options):
    # magnitude's, so that the two are compared at one sparsity by default
    ratio: float = default("ratio", 0.8, help="Prune ratio: the share of conv weights removed.")


@register_proposer
class Lamp(Proposer):
    name = "lamp"
    kind = "sparsity"
    about = "LAMP: layer-adaptive magnitude scores, one global threshold over all conv weights (Lee et al. 2021)"
    options = LampOptions
    finetune = Magnitude.finetune  # a weight-level method: the weight-level scripts' fine-tuning

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        return masked_proposal(model, base, *score_masks(lamp(model, base), settings.ratio))
