"""Corpora → manifests → folds and protocols, the workspace convention, and building a cache
from a manifest.

Owns: manifest reading/writing, corpus recipes (`corpora/`), folds, the workspace layout, and
the manifest-level extraction drivers (`extraction.py`, `text_extraction.py`).
May import: `ser.features`, `ser.heads`, `ser.errors`, `ser.registry` — never `training`,
`studies` or `cli`.
"""
