"""`ser predict --segments --plot`: one PNG per input, categorical bands or A/V/D lines."""

import numpy as np
import pandas as pd
from PIL import Image

from ser.inference.timeline_plot import plot_timelines


def _windows(input_id: str, count: int, columns: dict) -> pd.DataFrame:
    starts = np.arange(count) * 1.5
    return pd.DataFrame({"id": input_id, "path": input_id, "start": starts, "end": starts + 3.0, **columns})


def test_one_png_per_input_with_bands_and_uncertain_windows(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=12)
    labels = np.array(["angry", "happy", "sad"])[p.argmax(axis=1)].astype(object)
    labels[p.max(axis=1) < 0.5] = "uncertain"
    first = _windows("talks/a.wav", 12, {"prediction": labels, **{f"p_{c}": p[:, k] for k, c in
                                                                   enumerate(("angry", "happy", "sad"))}})
    second = first.assign(id="other/a.wav").head(1)  # same file name, one window
    written = plot_timelines(pd.concat([first, second]), tmp_path / "plots")
    assert [path.name for path in written] == ["a.png", "a-2.png"]
    width, height = Image.open(written[0]).size
    assert width > 2 * height  # a timeline: wide


def test_dimensional_windows_are_drawn_as_lines(tmp_path):
    values = {name: np.linspace(1, 5, 6) for name in ("arousal", "valence", "dominance")}
    [path] = plot_timelines(_windows("clip.wav", 6, values), tmp_path)
    assert path.name == "clip.png" and path.stat().st_size > 1000
