"""The table's arms train as each method's original code does (issue 29, items 3 and 4): the
fine-tune arm's budget and lr rule per method and preset, its recipe beside the scratch arms',
Scratch-B's cap per method under the imagenet preset, and a Scratch-B that is Scratch-E."""

from __future__ import annotations

import pytest

from archsearch.config import resolve
from archsearch.propose import get_proposer
from archsearch.schedule import RECIPE_DEFAULTS, FineTune, make_schedule
from archsearch.sweep.table import ARMS, scratch_b_cap


class _Proposal:
    """What an arm's schedule reads from its row's proposal trial."""

    def __init__(self, method: str, epochs: int):
        self.user_attrs = {"method": method, "epochs": epochs}


def _finetune(method: str, preset: str, epochs: int, **train):
    return ARMS["finetune"].schedule({"preset": preset, **train}, _Proposal(method, epochs), None, None)


@pytest.mark.parametrize("preset,epochs,slimming,l1norm", [("paper", 160, 160, 40), ("quick", 8, 8, 2),
                                                           ("imagenet", 90, 5, 20)])
def test_fine_tune_epochs_per_method_follow_the_original_scripts(preset, epochs, slimming, l1norm):
    """Network Slimming fine-tunes as long as it trained (its README: `--refine ... --epochs 160`;
    ImageNet: 5 epochs); L1-norm 40 of 160 (ImageNet 20 of 90)."""
    assert _finetune("slimming", preset, epochs).epochs == slimming
    assert _finetune("l1norm", preset, epochs).epochs == l1norm
    assert _finetune("magnitude", preset, epochs).epochs == {160: 40, 8: 2, 90: 10}[epochs]
    assert _finetune("l1norm", preset, epochs, finetune_epochs=3).epochs == 3  # [train] may set them


def test_slimming_fine_tunes_under_the_training_recipe_and_l1norm_at_a_constant_low_lr():
    scratch = ARMS["scratch-e"].schedule({"preset": "paper"}, _Proposal("slimming", 160), None, None)
    slim = _finetune("slimming", "paper", 160)
    assert (slim.lr, slim.milestones, slim.drop_epochs()) == (0.1, scratch.milestones, [80, 120])
    l1 = _finetune("l1norm", "paper", 160)
    assert (l1.lr, l1.milestones, l1.lr_at(39)) == (0.001, (), 0.001)
    quick = _finetune("slimming", "quick", 8)
    assert (quick.lr, quick.lr_shape, quick.warmup) == (0.2, "onecycle", 0.2)


@pytest.mark.parametrize("method", ["slimming", "l1norm"])
def test_fine_tune_keeps_the_recipes_augmentation_and_regularisers(method):
    """Under `quick` the fine-tune arm keeps Nesterov, label smoothing, crop padding, test-time
    flip and weight decay as the scratch arms do (before: plain SGD, no label smoothing)."""
    ft = _finetune(method, "quick", 8)
    scratch = make_schedule("quick", "scratch-e")
    for k in ("nesterov", "label_smoothing", "translate", "tta_flip", "weight_decay", "momentum", "batch_size"):
        assert getattr(ft, k) == getattr(scratch, k), k
    assert ft.nesterov and ft.label_smoothing == 0.1


def test_every_method_says_where_its_fine_tuning_comes_from():
    from archsearch.propose import PROPOSERS

    for name, p in PROPOSERS.items():
        assert isinstance(p.finetune, FineTune) and p.finetune.source, name


def test_a_plain_finetune_schedule_is_a_constant_lr_with_the_recipe():
    s = make_schedule("quick", "finetune")
    assert s.lr_shape == "step" and s.warmup == 0 and s.milestones == () and s.lr == resolve("quick").finetune_lr
    # under the paper's recipe nothing changed: its fine-tune fingerprints (so their resumes) stay
    assert not set(RECIPE_DEFAULTS) & set(make_schedule("paper", "finetune").to_dict())


@pytest.mark.parametrize("method,cap", [("l1norm", 2.0), ("thinet", 2.0), ("regression", 2.0), ("slimming", None),
                                        ("magnitude", None)])
def test_imagenet_scratch_b_is_capped_only_where_the_original_caps_it(method, cap):
    assert scratch_b_cap({"preset": "imagenet"}, get_proposer(method)) == cap
    assert scratch_b_cap({"preset": "paper"}, get_proposer(method)) is None
    assert scratch_b_cap({"preset": "imagenet", "cap": 3.0}, get_proposer(method)) == 3.0


def test_a_bad_fine_tune_rule_is_refused():
    from archsearch.errors import ArchsearchError

    with pytest.raises(ArchsearchError):
        FineTune(0.0)
    with pytest.raises(ArchsearchError):
        FineTune(0.25, lr="cosine")
    with pytest.raises(ArchsearchError, match="fine-tune lr rule"):
        make_schedule("paper", "finetune", finetune_lr="cosine")


def _run_table(tmp_path, rows: str, arms: str, epochs: int) -> dict:
    """A table sweep of `rows` and `arms` run to the end here; its completed trials by point."""
    from archsearch.sweep.runner import status, work
    from helpers import prepared_study
    from test_table import _ctx, write_table

    spec, plan, study = prepared_study(write_table(tmp_path, rows=rows, arms=arms, epochs=epochs), tmp_path / "wd", None)
    work(study, plan, _ctx(tmp_path / "wd"))
    assert status(study, plan).finished
    return {t.user_attrs["point"]: t for t in study.trials if t.state.name == "COMPLETE"}


def test_a_scratch_b_that_is_scratch_e_trains_once(tmp_path):
    """At 1 epoch, an L1-norm net pruned 10% costs about 0.8x: Scratch-B's int(1 x 1.2) = 1 epoch
    is Scratch-E's run. Its trial trains nothing and says whose numbers it has."""
    rows = '\n[[rows]]\nfrom = "l1norm-vgg11-digits"\nratio = 0.1\n'
    done = _run_table(tmp_path, rows, '["scratch-e", "scratch-b"]', epochs=1)
    sb, se = done["r0/scratch-b/s0"], done["r0/scratch-e/s0"]
    assert sb.user_attrs["same_as"] == "scratch-e" and sb.user_attrs["epochs"] == se.user_attrs["epochs"] == 1
    assert "best_acc" not in sb.user_attrs and "best_acc" in se.user_attrs
    assert not (tmp_path / "wd" / "trials" / "row0-scratch-b-s0").exists()


def test_a_cited_row_also_counts_its_nets_as_the_original_scripts_do():
    """Beside a paper's numbers the table gives the counts the original scripts print: PreResNet's
    channel-selection indexes are parameters there (1,711,338 for PreResNet-164, 1,703,258 here)."""
    from types import SimpleNamespace

    from archsearch.archs import base_spec
    from archsearch.sweep.table_report import _paper_counts

    base = base_spec("preresnet164", 10, width=1.0)
    prop = SimpleNamespace(user_attrs={"base_spec": base.to_dict()})
    got = _paper_counts({"params": 1_703_258, "pruned_params": 1_000_000}, prop)
    assert got == {"paper_count_params": 1_711_338, "paper_count_pruned_params": 1_008_080}
    vgg = SimpleNamespace(user_attrs={"base_spec": base_spec("vgg19", 10).to_dict()})
    assert _paper_counts({"params": 5, "pruned_params": 3}, vgg) == {"paper_count_params": 5,
                                                                      "paper_count_pruned_params": 3}


def test_the_arms_of_a_proposer_at_initialisation_train_the_rows_epochs(tmp_path):
    """SynFlow trains no large net (0 epochs): its row's scratch arm trains the row's schedule."""
    rows = '\n[[rows]]\nfrom = "synflow-vgg11-digits"\nratio = 0.5\noptions = {iterations = 5}\n'
    done = _run_table(tmp_path, rows, '["scratch-e"]', epochs=2)
    assert done["r0/unpruned/s0"].user_attrs["epochs"] == 0
    assert done["r0/scratch-e/s0"].user_attrs["epochs"] == 2
