"""The `--layers` syntax of `ser extract` and `ser train`: layers and ranges, nothing silently dropped."""

import pytest

from ser.cli.train_cmd import parse_layers as training_layers
from ser.errors import UserInputError
from ser.features.extract import parse_layers as extraction_layers
from ser.features.layer_spec import read_layer_spec


def test_layers_and_ranges_are_read_in_the_order_written():
    assert read_layer_spec("0,4,8-12") == [0, 4, 8, 9, 10, 11, 12]
    assert read_layer_spec(" 12 , 2 - 3 ") == [12, 2, 3]


@pytest.mark.parametrize("text, message", [
    ("8-", "cannot read --layers '8-' \\(at '8-'\\)"),  # was read as [8]: the rest of the range was dropped
    ("5-2", "the range '5-2' runs backwards"),  # was an empty list: "outside 0-N" from extract
    ("-1", "cannot read"), ("1--2", "cannot read"), ("a,3", "at 'a'"),
])
def test_a_spec_that_is_not_layers_and_ranges_is_refused(text, message):
    with pytest.raises(UserInputError, match=message):
        read_layer_spec(text)


def test_a_spec_that_names_no_layer_is_refused_by_both_commands():
    for parse in (lambda: extraction_layers(",,", 4), lambda: training_layers(",,")):
        with pytest.raises(UserInputError, match="--layers ',,' names no layer"):
            parse()
    with pytest.raises(UserInputError, match="--layers '3,3' repeats a layer"):  # a training layer is used once
        training_layers("3,3")
