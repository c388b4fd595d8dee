"""Training heads from a cache: recipes, tasks (categorical, dimensional, soft labels), training
data and batching, the loop (solo and stacked), run directories, metrics, statistics, probes and
tracking.

A run reads top-down: its inputs are resolved once (`run.py`), the data is loaded
(`loading.py`), folds are chosen (`protocol.py`), the loop trains (`loop.py`) and the run
directory is written (`run_dir.py`).
May import: `ser.data`, `ser.features`, `ser.heads`, `ser.errors`, `ser.registry` — never the
stages above it (`finetune`, `distill`, `inference`, `studies`) or `cli`.
"""
