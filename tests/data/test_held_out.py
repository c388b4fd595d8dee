"""The dev split against scikit-learn's train_test_split: the same held-out rows for the same seed."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from ser.data.held_out import held_out_rows


def _label_sets():
    """Balanced, skewed, tied and two-member classes, string labels, sizes 6-400."""
    rng = np.random.default_rng(0)
    for case in range(120):
        classes = int(rng.integers(2, 9))
        counts = rng.integers(2, 60, size=classes)
        if case % 3 == 0:
            counts[:] = counts[0]  # equal classes: the remainders tie and the draw breaks the ties
        labels = np.repeat([f"class{c}" for c in range(classes)], counts)
        yield rng.permutation(labels), float(rng.choice([0.1, 0.2, 0.25, 0.3, 0.5])), int(rng.integers(0, 1000))


@pytest.mark.parametrize("stratified", [True, False])
def test_held_out_rows_are_scikit_learns(stratified):
    compared = 0
    for labels, fraction, seed in _label_sets():
        rows = np.arange(len(labels))
        try:
            keep, held = train_test_split(rows, test_size=fraction, random_state=seed,
                                          stratify=labels if stratified else None)
        except ValueError:  # a part smaller than the number of classes: both refuse
            with pytest.raises(ValueError):
                held_out_rows(labels, len(labels), fraction, seed)
            continue
        ours_keep, ours_held = held_out_rows(labels if stratified else None, len(labels), fraction, seed)
        assert sorted(ours_held.tolist()) == sorted(held.tolist()) and sorted(ours_keep.tolist()) == sorted(keep.tolist())
        compared += 1
    assert compared >= 100


def test_a_class_of_one_row_and_an_empty_training_part_are_refused():
    with pytest.raises(ValueError, match="only 1 member"):
        held_out_rows(np.array(["a", "a", "b", "b", "c"]), 5, 0.4, 0)
    with pytest.raises(ValueError, match="training part is empty"):
        held_out_rows(None, 1, 0.2, 0)


def test_making_folds_does_not_import_scikit_learn():
    script = ("import sys\nimport pandas as pd\nfrom ser.data.folds import make_folds\n"
              "df = pd.DataFrame({'id': [f'u{i}' for i in range(40)], 'label': ['a', 'b'] * 20,\n"
              "                   'session': [str(i % 4) for i in range(40)], 'speaker': [str(i % 8) for i in range(40)]})\n"
              "assert len(make_folds(df, 'session')) == 4\nprint('sklearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
