"""Grid expansion and grid files (YAML and TOML) for `ser sweep`."""

from pathlib import Path

import pytest

from ser.errors import UserInputError
from ser.studies.grid import build_grid, load_grid_file, parse_folds, parse_values


def test_comma_separated_and_repeated_values_expand_to_every_combination():
    grid = build_grid(
        None,
        {"head": ["shiftcnn,shiftlstm", "shiftformer"], "shift_proportion": ["1/2,1/4"], "seeds": ["0,1,2"]},
        [],
        ["all"],
    )
    assert grid.parts[0]["head"] == ("shiftcnn", "shiftlstm", "shiftformer")
    assert grid.parts[0]["seed"] == (0, 1, 2)
    points = grid.points()
    assert len(points) == 3 * 2 * 3
    assert points[0] == {"head": "shiftcnn", "shift_proportion": "1/2", "seed": 0}
    assert points[1] == {"head": "shiftcnn", "shift_proportion": "1/2", "seed": 1}  # last axis fastest
    assert len({tuple(p.items()) for p in points}) == len(points)
    assert grid.folds is None
    assert grid.varied() == ["head", "shift_proportion", "seed"]


def test_values_are_typed_and_deduplicated():
    assert parse_values("seed", ["1,1,2"]) == (1, 2)
    assert parse_values("lr", ["1e-3"]) == (0.001,)
    assert parse_values("shift_bidirectional", ["true,false"]) == (True, False)
    assert parse_values("head_option.num_blocks", ["1,2"]) == (1, 2)
    with pytest.raises(UserInputError, match="epochs"):
        parse_values("epochs", ["three"])


def test_a_list_valued_head_option_keeps_its_commas():
    """`--head-option "layers=[0, 1]"` was split into '[0' and '1]', and a list value made
    `Grid.values` fail with "unhashable type: 'list'"."""
    assert parse_values("head_option.layers", ["[0, 1],[2]"]) == ([0, 1], [2])
    grid = build_grid(None, {"head": ["linear"]}, ["layers=[0, 1],[2]", "hidden_size=8,16"], None)
    assert grid.values("head_option.layers") == [[0, 1], [2]]
    assert len(grid.points()) == 4


def test_folds_all_or_a_list():
    assert parse_folds(None) is None
    assert parse_folds(["all"]) is None
    assert parse_folds(["0,1", "1"]) == ("0", "1")
    with pytest.raises(UserInputError):
        parse_folds(["all,0"])


def test_yaml_and_toml_grid_files_give_the_same_grid(tmp_path: Path):
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text(
        "head: [shiftcnn, shiftlstm]\nshift_proportion: ['1/2', '1/8']\nshift_placement: residual\n"
        "seeds: [0, 1]\nfold: [0]\nepochs: 3\nhead_options:\n  num_blocks: [1, 2]\n"
    )
    toml_file = tmp_path / "grid.toml"
    toml_file.write_text(
        'head = ["shiftcnn", "shiftlstm"]\nshift_proportion = ["1/2", "1/8"]\nshift_placement = "residual"\n'
        'seeds = [0, 1]\nfold = [0]\nepochs = 3\n[head_options]\nnum_blocks = [1, 2]\n'
    )
    from_yaml, from_toml = load_grid_file(yaml_file), load_grid_file(toml_file)
    assert from_yaml == from_toml
    assert from_yaml.folds == ("0",)
    assert from_yaml.parts[0]["epochs"] == (3,)
    assert from_yaml.parts[0]["head_option.num_blocks"] == (1, 2)
    assert len(from_yaml.points()) == 2 * 2 * 1 * 2 * 1 * 2


def test_command_line_replaces_the_files_values(tmp_path: Path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("head: [shiftcnn, shiftlstm]\nseeds: [0, 1]\nfold: all\n")
    grid = build_grid(grid_file, {"seed": ["5"], "head": []}, ["dropout=0.1,0.2"], ["1"])
    assert grid.parts[0]["head"] == ("shiftcnn", "shiftlstm")
    assert grid.parts[0]["seed"] == (5,)
    assert grid.parts[0]["head_option.dropout"] == (0.1, 0.2)
    assert grid.folds == ("1",)


def test_bad_grids_are_refused_with_a_clear_error(tmp_path: Path):
    with pytest.raises(UserInputError, match="at least one head"):
        build_grid(None, {"seed": ["0"]}, [], None)
    bad_key = tmp_path / "grid.yaml"
    bad_key.write_text("head: [cnn]\nshift_proportoin: ['1/2']\n")
    with pytest.raises(UserInputError, match="shift_proportoin"):
        load_grid_file(bad_key)
    json_file = tmp_path / "grid.json"
    json_file.write_text("{}")
    with pytest.raises(UserInputError, match="neither"):
        load_grid_file(json_file)
    with pytest.raises(UserInputError, match="key=value"):
        build_grid(None, {"head": ["cnn"]}, ["dropout"], None)


@pytest.mark.parametrize("axis, value, message", [
    ("shift_proportion", "1/0", "cannot read shift proportion '1/0'"),
    ("shift_placement", "sideways", "choose from none, residual, tsm-residual, inplace, replacement"),
    ("shift_stride", "0", "a shift moves at least 1 frame"),
])
def test_a_bad_shift_value_is_refused_with_the_grid_not_by_every_run(axis, value, message):
    """Each failed every run of its value, one error.txt at a time."""
    with pytest.raises(UserInputError, match=f"bad value '{value}' for sweep option {axis}: {message}"):
        build_grid(None, {"head": ["shiftcnn"], axis: [value]}, [], None)
    assert build_grid(None, {"head": ["shiftcnn"], "shift_proportion": ["1/4,0.125,16"]}, [], None).values(
        "shift_proportion") == ["1/4", "0.125", "16"]  # written as given, for the run names


@pytest.mark.parametrize("name, content, expected", [
    ("grid.yaml", b"head: [cnn\n", "cannot parse grid file {path}: expected ',' or ']', but got '<stream end>' "
                                    "(line 2, column 1)"),
    ("grid.toml", b"head = [cnn\n", "cannot parse grid file {path}: Invalid value (at line 1, column 9)"),
    ("grid.yaml", b"head: [cnn]\n\xff\n", "grid file {path} is not UTF-8 text (byte 0xff at position 12)"),
], ids=["yaml", "toml", "not-utf8"])
def test_an_unreadable_grid_file_is_one_line_saying_where(tmp_path: Path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserInputError) as refused:
        load_grid_file(path)
    assert refused.value.message == expected.format(path=path)  # PyYAML's own text spans five lines


def test_a_file_can_list_sub_grids_whose_union_is_swept(tmp_path: Path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "seeds: [0, 1]\nfold: all\ngrids:\n"
        "  - {head: [shiftcnn, shiftlstm], shift_placement: [residual, inplace]}\n"
        "  - {head: [shiftformer], shift_placement: [replacement]}\n"
    )
    grid = build_grid(grid_file, {"epochs": ["2"]}, [], None)
    points = grid.points()
    assert len(points) == 2 * 2 * 2 + 1 * 1 * 2
    assert {"seed": 0, "head": "shiftformer", "shift_placement": "replacement", "epochs": 2} in points
    assert all(p["epochs"] == 2 for p in points)
    assert grid.values("shift_placement") == ["residual", "inplace", "replacement"]
    assert grid.varied() == ["seed", "head", "shift_placement"]
