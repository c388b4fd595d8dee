"""Recipes (paper defaults, schedule, no decay on biases/norms) and length-bucketed batching."""

import math

import numpy as np
import pytest

from ser.errors import UserInputError
from ser.finetune.config import FinetuneRecipe
from ser.heads import create_head
from ser.training.batching import bucketed_batches, sorted_batches
from ser.training.recipes import build_optimizer, corpus_head_defaults, lr_at, recipe_for


def test_paper_recipes_per_head_family():
    shift = recipe_for("shiftcnn")
    assert (shift.optimizer, shift.lr, shift.weight_decay, shift.warmup_epochs) == ("adamw", 5e-4, 0.05, 5)
    assert (shift.epochs, shift.batch_size, shift.grad_clip, shift.schedule) == (100, 32, 5.0, "cosine")
    assert recipe_for("shiftformer") == shift == recipe_for("lstm")
    timnet = recipe_for("timnet")
    assert (timnet.optimizer, timnet.lr, timnet.betas, timnet.label_smoothing) == ("adam", 1e-3, (0.93, 0.98), 0.1)
    assert (timnet.batch_size, timnet.epochs) == (64, 500)
    assert (recipe_for("linear").optimizer, recipe_for("linear").lr) == ("adam", 1e-4)


def test_overrides_ignore_none_and_reject_nonsense():
    recipe = recipe_for("shiftcnn").with_overrides(epochs=7, lr=None)
    assert recipe.epochs == 7 and recipe.lr == 5e-4
    with pytest.raises(UserInputError):
        recipe_for("shiftcnn").with_overrides(optimizer="sgd")
    with pytest.raises(UserInputError):
        recipe_for("shiftcnn").with_overrides(momentum=0.9)


@pytest.mark.parametrize("override, message", [
    ({"epochs": 0}, "--epochs must be above 0, not 0"),
    ({"batch_size": -2}, "--batch-size must be above 0, not -2"),
    ({"lr": math.nan}, "--lr must be above 0, not nan"),
    ({"max_steps": 0}, "max_steps must be above 0, not 0"),
    # these trained without a word: a clip of 0 zeroes every update, one below 0 climbs the loss
    ({"grad_clip": 0.0}, "--grad-clip must be above 0, not 0"),
    ({"grad_clip": -1.0}, "--grad-clip must be above 0, not -1"),
    ({"grad_clip": math.nan}, "--grad-clip must be above 0, not nan"),
    ({"weight_decay": -0.5}, "--weight-decay must be 0 or more, not -0.5"),
    ({"warmup_epochs": -1}, "--warmup-epochs must be 0 or more, not -1"),
    ({"min_lr": -1e-6}, "min_lr must be 0 or more, not -1e-06"),
    ({"label_smoothing": 1.0}, "label_smoothing must be in \\[0, 1\\), not 1"),
])
def test_a_non_positive_setting_is_named_with_its_value(override, message):
    with pytest.raises(UserInputError, match=f"^{message}$"):
        recipe_for("linear").with_overrides(**override)
    if "min_lr" not in override and "max_steps" not in override:  # fine-tuning's recipe has the same settings
        with pytest.raises(UserInputError, match=f"^{message}$"):
            FinetuneRecipe().with_overrides(**override)


def test_fine_tuning_names_its_bad_setting_and_lets_the_backbone_rate_be_zero():
    recipe = FinetuneRecipe()
    assert recipe.with_overrides(backbone_lr=0.0).backbone_lr == 0.0
    with pytest.raises(UserInputError, match="^--backbone-lr must be 0 or more, not -1e-05$"):
        recipe.with_overrides(backbone_lr=-1e-5)
    with pytest.raises(UserInputError, match="^--epochs must be above 0, not 0$"):
        recipe.with_overrides(epochs=0)


def test_shift_schedule_is_timm_cosine_stepped_as_shiftser_steps_it():
    """timm CosineLRScheduler(t_initial=all steps, warmup_t, warmup_lr_init, lr_min), updated after
    each optimiser step, so step s trains at the value of s − 1."""
    recipe = recipe_for("shiftcnn").with_overrides(epochs=10, warmup_epochs=2, lr=1.0, warmup_lr=0.5, min_lr=0.1)
    steps = 5  # per epoch: 10 warm-up steps, 50 in all
    assert lr_at(0, recipe, steps) == lr_at(1, recipe, steps) == pytest.approx(0.5)  # the warm-up start
    assert lr_at(2, recipe, steps) == pytest.approx(0.55)
    assert lr_at(10, recipe, steps) == pytest.approx(0.95)  # last warm-up value
    # the cosine is counted from step 0, not from the end of the warm-up: at t = 10 it is already past its peak
    assert lr_at(11, recipe, steps) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 10 / 50)))
    assert lr_at(26, recipe, steps) == pytest.approx(0.55)  # t = 25: half-way between lr and min_lr
    assert lr_at(51, recipe, steps) == lr_at(500, recipe, steps) == pytest.approx(0.1)  # the floor
    paper = recipe_for("shiftformer")
    assert (paper.warmup_lr, paper.min_lr, paper.warmup_epochs) == (5e-7, 5e-6, 5)
    assert lr_at(0, paper, 100) == pytest.approx(5e-7)
    constant = recipe_for("timnet")
    assert lr_at(0, constant, 3) == lr_at(999, constant, 3) == 1e-3


def test_linear_probe_runs_s3prl_s_step_budget_unless_epochs_are_given():
    linear = recipe_for("linear")
    assert (linear.grad_clip, linear.max_steps, linear.batch_size, linear.schedule) == (1.0, 30_000, 32, "constant")
    assert linear.total_epochs(111) == 271  # 30,000 updates at 111 per epoch end inside epoch 271
    short = linear.with_overrides(epochs=5)
    assert short.max_steps is None and short.total_epochs(111) == 5
    assert short.eval_every_updates is None  # an epoch-based run scores dev every epoch


def test_linear_probe_scores_dev_every_1000_updates_as_s3prl():
    assert recipe_for("linear").eval_every_updates == 1_000  # s3prl emotion config.yaml: eval_step
    assert recipe_for("shiftcnn").eval_every_updates is None
    assert recipe_for("linear").with_overrides(epochs=5, eval_every_updates=2).eval_every_updates == 2
    with pytest.raises(UserInputError):
        recipe_for("linear").with_overrides(eval_every_updates=-1)


def test_evaluation_is_due_in_the_epoch_holding_each_nth_update_and_at_the_end():
    from ser.training.loop import evaluation_due

    # 11 updates per epoch, every 100: epochs ending at 11, 22, … are scored when they cross 100, 200, …
    due = [epoch for epoch in range(1, 40) if evaluation_due(11 * (epoch - 1), 11 * epoch, 100, epoch == 39)]
    assert due == [10, 19, 28, 37, 39]
    assert evaluation_due(0, 11, None, False) and evaluation_due(0, 11, 0, False)  # no cadence: every epoch
    assert evaluation_due(990, 1000, 1000, False) and not evaluation_due(1000, 1010, 1000, False)


def test_epochs_inside_the_warm_up_warn():
    assert "warm-up" in recipe_for("shiftcnn").with_overrides(epochs=5).schedule_warning()
    assert recipe_for("shiftcnn").with_overrides(epochs=6).schedule_warning() is None
    assert recipe_for("timnet").with_overrides(epochs=1).schedule_warning() is None  # no warm-up


def test_timnet_has_ten_blocks_for_iemocap_only():
    assert corpus_head_defaults("timnet", "iemocap") == {"num_blocks": 10}
    assert corpus_head_defaults("timnet", "emodb") == {} == corpus_head_defaults("shiftcnn", "iemocap")


def test_weight_decay_skips_biases_norms_and_vectors():
    head = create_head("shiftcnn", 16, 3, 4)
    optimizer = build_optimizer(head, recipe_for("shiftcnn"))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    names = {id(p): n for n, p in head.named_parameters()}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert any("norm" in n for n in plain_names) and any(n.endswith("bias") for n in plain_names)
    assert any("layer_sum" in n for n in plain_names)  # layer weight logits are not decayed
    assert len(decayed["params"]) + len(plain["params"]) == len(list(head.parameters()))


def test_bucketed_batches_cover_every_row_once_and_are_seeded():
    lengths = np.random.default_rng(0).integers(50, 500, size=203)
    batches = bucketed_batches(lengths, 16, seed=0, epoch=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(203))
    assert all(len(b) <= 16 for b in batches)
    again = bucketed_batches(lengths, 16, seed=0, epoch=3)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other_epoch = bucketed_batches(lengths, 16, seed=0, epoch=4)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other_epoch))


def test_bucketing_reduces_padding_against_random_batches():
    lengths = np.random.default_rng(1).integers(50, 500, size=512)
    bucketed = bucketed_batches(lengths, 16, seed=0, epoch=0)
    order = np.random.default_rng(0).permutation(512)
    shuffled = [order[i : i + 16] for i in range(0, 512, 16)]

    def padding(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    assert padding(bucketed) < 0.3 * padding(shuffled)


def test_sorted_batches_for_evaluation():
    lengths = np.array([5, 9, 1, 7])
    batches = sorted_batches(lengths, 3)
    assert [b.tolist() for b in batches] == [[1, 3, 0], [2]]
