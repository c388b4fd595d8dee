"""ser: speech emotion recognition from cached pre-trained speech representations.

    import ser
    clf = ser.load("runs/<corpus>/<model>/<run>")   # or a folder written by `ser export`
    clf.predict("clip.wav")                        # Prediction(label=…, probabilities={…})

Importing `ser` stays cheap: torch and the rest load on the first call to `ser.load`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(path, fold: str = "all", **options):
    """A trained model with its backbone, ready to predict: a run directory, one of its fold folders,
    or an exported folder. Options: model_dir (local copy of the backbone), allow_download, device,
    precision, windows, window, hop, batch_seconds, calibrated (False: the raw softmax, without the
    dev-fitted temperature), min_confidence. See `ser.inference.predict.EmotionRecognizer`."""
    from ser.inference.predict import load as load_recognizer

    return load_recognizer(path, fold, **options)


__all__ = ["load", "__version__"]
