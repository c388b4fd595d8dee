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
