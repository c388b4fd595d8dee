"""Configuration columns of run directories: the shift a preset used is reported even when the
user did not set it."""

from ser.studies.results import config_columns


def test_preset_runs_report_the_shift_they_used():
    row = config_columns({"head": "shiftcnn", "head_kwargs": {}, "seed": 0, "fold": "Ses01",
                          "head_resolved": {"shift_placement": "residual", "n_div": 16}})
    assert (row["shift_proportion"], row["shift_placement"]) == ("1/16", "residual")


def test_options_the_user_set_win_over_the_preset():
    row = config_columns({"head": "shiftcnn", "head_kwargs": {"shift_proportion": "1/8"},
                          "head_resolved": {"shift_placement": "residual", "n_div": 8}})
    assert (row["shift_proportion"], row["shift_placement"]) == ("1/8", "residual")


def test_a_head_that_does_not_shift_has_no_proportion():
    row = config_columns({"head": "cnn", "head_kwargs": {},
                          "head_resolved": {"shift_placement": "none", "n_div": 16}})
    assert (row["shift_proportion"], row["shift_placement"]) == (None, "none")
    assert config_columns({"head": "linear", "head_kwargs": {}, "head_resolved": {}})["shift_proportion"] is None


def test_cross_corpus_runs_are_a_configuration_of_their_own():
    import pandas as pd

    from ser.studies.results import configuration_columns

    rows = pd.DataFrame([
        config_columns({"head": "linear", "head_kwargs": {}, "seed": 0, "fold": "Ses01"}),
        config_columns({"head": "linear", "head_kwargs": {}, "seed": 0, "fold": "cross-other", "test_corpus": "other"}),
    ])
    assert "test_corpus" in configuration_columns(rows)


def test_identical_runs_count_once_and_std_is_the_sample_std():
    import math

    import pandas as pd
    import pytest

    from ser.studies.results import summarize

    def row(seed, fold, ua, run_dir):
        return {"head": "cnn", "shift_proportion": None, "shift_placement": "none", "seed": seed, "fold": fold,
                "status": "done", "run_dir": run_dir, "ua": ua}

    three_copies = pd.DataFrame([row(0, 1, 0.6, f"copy{i}/fold1") for i in range(3)])
    summary = summarize(three_copies)
    assert summary["n"].tolist() == [1] and math.isnan(summary["ua_std"].iloc[0])  # not n=3 with std 0
    folds = pd.DataFrame([row(0, 1, 0.6, "a/fold1"), row(0, 2, 0.7, "a/fold2"), row(0, 2, 0.7, "b/fold2")])
    summary = summarize(folds)
    assert summary["n"].tolist() == [2] and summary["ua_std"].iloc[0] == pytest.approx(0.1 / math.sqrt(2))


def test_a_run_that_changes_the_dev_split_or_any_recipe_setting_is_a_configuration_not_a_repeat():
    import dataclasses

    import pandas as pd

    from ser.studies.results import RECIPE_COLUMNS, configuration_columns, summarize
    from ser.training.recipes import Recipe

    assert set(RECIPE_COLUMNS) == {field.name for field in dataclasses.fields(Recipe)}  # none forgotten

    def row(run, ua, fold="fold1", **config):
        base = {"head": "shiftcnn", "head_kwargs": {}, "seed": 0, "fold": fold, "dev": "auto", "folds": None,
                "label_smoothing": 0.0, "betas": [0.9, 0.999], "lr": 5e-4}
        return {**config_columns({**base, **config}), "status": "done", "run_dir": f"{run}/{fold}", "ua": ua}

    runs = pd.DataFrame([row("default", 0.60), row("default", 0.60, "fold2"), row("random-dev", 0.55, dev="random"),
                         row("smoothed", 0.62, label_smoothing=0.1), row("betas", 0.58, betas=[0.93, 0.98])])
    summary = summarize(runs)
    assert len(summary) == 4 and sorted(summary["ua_mean"]) == [0.55, 0.58, 0.60, 0.62]
    assert {"dev", "label_smoothing", "betas"} <= set(summary.columns)
    assert "folds" not in configuration_columns(summary)  # the count of folds (1 or 2) is no option
    repeated = pd.DataFrame([row("default", 0.60), row("again", 0.60)])
    assert summarize(repeated)["n"].tolist() == [1]  # the same settings still count once
