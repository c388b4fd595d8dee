"""Corpus recipes by name (`ser list corpora`) and the step that turns one into a manifest."""

from __future__ import annotations

from ser.data.corpora import acted, acted_world, generic, iemocap, msp, synthetic
from ser.data.corpora.prepare import ExcludedFile, PreparedCorpus, prepare_corpus
from ser.data.corpora.recipe import CorpusRecipe
from ser.registry import Registry

CORPORA: Registry[CorpusRecipe] = Registry("corpus", list_command="ser list corpora")

for _recipe in (
    synthetic.RECIPE,
    iemocap.RECIPE,
    msp.PODCAST,
    msp.IMPROV,
    acted.RAVDESS,
    acted.SAVEE,
    acted.CREMA_D,
    acted.TESS,
    acted_world.EMODB,
    acted_world.EMOVO,
    acted_world.CASIA,
    acted_world.ASED,
    acted_world.TUREV,
    generic.FOLDER,
    generic.CSV,
):
    CORPORA.register(_recipe.name, help=_recipe.help)(_recipe)

__all__ = ["CORPORA", "CorpusRecipe", "ExcludedFile", "PreparedCorpus", "prepare_corpus"]
