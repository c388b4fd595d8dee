"""The fine-tuning setting (`ser finetune`): the backbone's transformer trained under a head from
the manifest's audio, with no hidden-state cache.

A run reads top-down: `run.py` resolves its inputs and folds, `data.py` loads the audio (or the
conv cache of `conv_cache.py`), `model.py` joins backbone and head, `loop.py` trains a fold, and
`config.py` holds the options and the learning-rate schedule.
May import: `ser.training`, `ser.data`, `ser.features`, `ser.heads`, `ser.errors`, `ser.registry`.
Never its siblings `ser.distill` and `ser.inference`: what they share lives in `ser.training`.
"""
