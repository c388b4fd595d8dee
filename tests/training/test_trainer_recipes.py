"""Recipes (paper defaults, schedule, no decay on biases/norms) and length-bucketed batching."""

import numpy as np
import pytest

from ser.errors import UserInputError
from ser.heads import create_head
from ser.training.batching import bucketed_batches, sorted_batches
from ser.training.recipes import build_optimizer, lr_at, recipe_for


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


def test_warmup_then_cosine_per_step():
    recipe = recipe_for("shiftcnn").with_overrides(epochs=10, warmup_epochs=2, lr=1.0)
    steps = 5  # per epoch
    assert lr_at(0, recipe, steps) == pytest.approx(1 / 10)
    assert lr_at(9, recipe, steps) == pytest.approx(1.0)  # end of warm-up
    assert lr_at(10, recipe, steps) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(30, recipe, steps) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(49, recipe, steps) < 0.01


def test_a_run_shorter_than_its_warmup_still_reaches_the_peak_and_decays():
    recipe = recipe_for("shiftcnn").with_overrides(epochs=4, lr=1.0)  # the paper's warm-up is 5 epochs
    steps = 10
    assert lr_at(9, recipe, steps) == pytest.approx(1.0)  # warm-up capped at a quarter of the run
    assert lr_at(25, recipe, steps) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(39, recipe, steps) < 0.01
    paper = recipe_for("shiftcnn")  # 5 of 100 epochs: unchanged
    assert lr_at(5 * steps - 1, paper, steps) == pytest.approx(paper.lr)
    assert lr_at(5 * steps - 2, paper, steps) == pytest.approx(paper.lr * (5 * steps - 1) / (5 * steps))
    constant = recipe_for("timnet")
    assert lr_at(0, constant, 3) == lr_at(999, constant, 3) == 1e-3


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
