"""`counting.original_params`: the parameter count the original scripts report (issue 29, item
5), which adds the channel-selection layers' index vectors to archsearch's count, against the
numbers those scripts give and against the ported model files (tests/reference_models.py)."""

import numpy as np
import pytest

import reference_models as R
from archsearch.archs import base_spec, get_family, parse_arch
from archsearch.counting import count, original_params


@pytest.mark.parametrize("arch,ours,theirs", [("preresnet164", 1_703_258, 1_711_338),
                                              ("densenet40", 1_059_298, 1_068_658)])
def test_the_original_scripts_numbers_beside_archsearch_s(arch, ours, theirs):
    spec = base_spec(arch, 10)
    assert count(spec).params == ours and original_params(spec) == theirs


@pytest.mark.parametrize("arch", ["vgg16", "vgg19", "resnet56"])
def test_a_family_without_selection_layers_counts_the_same(arch):
    spec = base_spec(arch, 10)
    assert original_params(spec) == count(spec).params
    if arch == "vgg19":
        assert original_params(spec) == 20_035_018


@pytest.mark.parametrize("arch", ["preresnet56", "densenet40"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_pruned_net_counts_as_the_original_model_file_does(arch, seed):
    """Every group at a random width: the original model built with that cfg, index vectors
    included (what resprune.py / denseprune.py write), has `original_params` parameters."""
    base = base_spec(arch, 100)
    rng = np.random.default_rng(seed)
    spec = base.replace(widths=[int(rng.integers(max(1, w // 5), w + 1)) for w in base.widths], meta={})
    get_family(spec.family).check(spec)
    fam, depth = parse_arch(arch)
    ref = {"preresnet": R.PreResNet, "densenet": R.DenseNet}[fam.name](depth, num_classes=100, cfg=spec.widths)
    without, idx = R.params(ref)
    assert idx > 0 and count(spec).params == without and original_params(spec) == without + idx
