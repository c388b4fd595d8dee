"""A run's configuration: the head and its options, the recipe (paper defaults + overrides),
the protocol and the seed; its readable default name and the head constructor's options."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ser.heads import HEADS, parse_proportion
from ser.training.recipes import Recipe, recipe_for
from ser.training.seeds import refuse_bad_seed

RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
CROSS_CORPUS_FIELDS = ("test_manifest", "test_corpus", "label_map")
AUTO_STANDARDIZE = "auto"


@dataclass(frozen=True)
class TrainConfig:
    """One run: head + its options, the recipe (paper defaults + overrides), protocol, seed."""

    head: str
    head_kwargs: dict = field(default_factory=dict)  # only options that were set (None = head default)
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    task: str = "categorical"
    layers: list[int] | None = None  # None = every layer of the cache
    folds: str | None = None  # fold scheme; None = the corpus default
    k: int | None = None
    dev: str = "auto"  # auto | speaker | random (ser/data/fold.py dev_split)
    dev_fraction: float = 0.2
    fold_seed: int = 0  # the protocol stays fixed while the training seed varies
    record_test_curve: bool = False  # score test every epoch: history's test columns + the optimistic best epoch
    # per-layer, per-channel z-scores with the fold's training statistics; "auto": on for weight-free
    # frontend caches (fbank, mfcc, …), off for SSL caches (feature_defaults.py)
    standardize: bool | str = "auto"
    # z-score each speaker's frames with that speaker's own statistics first (speaker_norm.py);
    # such a run cannot predict a new voice
    per_speaker: bool = False
    # after the epochs, train a fresh head on train + dev for the epochs dev chose (loop.py _refit)
    refit: bool = False
    # warp each training utterance's mel channels by a factor in [1 − A, 1 + A] (frequency_warp.py)
    frequency_warp: float = 0.0
    model: str | None = None  # the cache's model alias (informational)
    corpus: str | None = None
    text_model: str | None = None  # a teacher's text cache model (ser/distill/teacher.py); None = audio only
    test_manifest: str | None = None  # cross-corpus: test on this manifest's corpus (cross_corpus.py)
    test_corpus: str | None = None
    label_map: dict[str, str | None] | None = None  # test label → training label (None: drop)

    @classmethod
    def create(cls, head: str, head_kwargs: dict | None = None, **options) -> "TrainConfig":
        """The head's paper recipe with every non-None recipe option in `options` applied."""
        recipe_options = {name: options.pop(name) for name in RECIPE_FIELDS if name in options}
        recipe = recipe_for(head).with_overrides(**recipe_options)
        set_kwargs = {key: value for key, value in (head_kwargs or {}).items() if value is not None}
        HEADS.get(head).check(head_constructor_options(set_kwargs))  # before a cache is read or a run planned
        unset = [name for name, value in options.items() if value is None]
        for name in unset:
            del options[name]
        refuse_bad_seed(options.get("seed", 0))
        return cls(head=head, head_kwargs=set_kwargs, recipe=recipe, **options)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def trains_solo(self) -> bool:
        """Whether only the solo loop trains this run: a refit trains a second head after the
        selection epochs, a frequency warp warps the training batches (training/loop.py)."""
        return self.refit or bool(self.frequency_warp)

    def to_dict(self) -> dict:
        """Flat dict: the recipe's fields sit beside the run's own (epochs, lr, batch_size, …)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "recipe"}
        data["head_kwargs"] = dict(self.head_kwargs)
        data["layers"] = None if self.layers is None else list(self.layers)
        for name in CROSS_CORPUS_FIELDS:  # absent unless set: configs of in-corpus runs stay as they were
            if data[name] is None:
                del data[name]
        for name in ("per_speaker", "refit", "frequency_warp"):  # likewise: a finished run's config.json still matches
            if not data[name]:
                del data[name]
        if self.label_map is not None:
            data["label_map"] = dict(self.label_map)
        return {**data, **self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        own = {f.name for f in dataclasses.fields(cls)} - {"recipe"}
        recipe = Recipe.from_dict({name: data[name] for name in RECIPE_FIELDS if name in data})
        return cls(recipe=recipe, **{name: data[name] for name in own if name in data})

    def run_name(self) -> str:
        """A readable default run name from the head, the options that differ from its recipe and
        the seed, e.g. `shiftcnn-p1_16-residual-s0`."""
        parts = [self.head]
        kwargs = dict(self.head_kwargs)
        if "shift_proportion" in kwargs:
            parts.append("p" + str(kwargs.pop("shift_proportion")).replace("/", "_"))
        if "shift_placement" in kwargs:
            parts.append(str(kwargs.pop("shift_placement")))
        if "shift_bidirectional" in kwargs:
            parts.append("bi" if kwargs.pop("shift_bidirectional") else "uni")
        if "shift_stride" in kwargs:
            parts.append(f"stride{kwargs.pop('shift_stride')}")
        parts += [f"{key}{value}" for key, value in sorted(kwargs.items())]
        paper = recipe_for(self.head)
        short = {"epochs": "e", "batch_size": "bs", "lr": "lr", "weight_decay": "wd", "label_smoothing": "ls"}
        for name, prefix in short.items():
            if getattr(self.recipe, name) != getattr(paper, name):
                parts.append(f"{prefix}{getattr(self.recipe, name):g}")
        if self.layers is not None:
            parts.append("L" + "_".join(map(str, self.layers)))
        if self.folds is not None:
            parts.append(self.folds.split(":")[0] + (str(self.k) if self.k else ""))  # emobox:DIR → emobox
        if self.dev != "auto":
            parts.append(f"dev{self.dev}")
        if self.standardize != AUTO_STANDARDIZE:
            parts.append("std" if self.standardize else "nostd")
        if self.per_speaker:
            parts.append("spk")
        if self.refit:
            parts.append("refit")
        if self.frequency_warp:
            parts.append(f"fw{self.frequency_warp:g}")
        if self.task != "categorical":
            parts.append(self.task)
        parts.append(f"s{self.seed}")
        if self.test_corpus is not None:
            parts.append(f"x{self.test_corpus}")
        name = "-".join(parts)
        return "".join(c if c.isalnum() or c in "._-=" else "_" for c in name)


def head_constructor_options(head_kwargs: dict) -> dict:
    """The run's head options as the head constructors name them: `shift_proportion` (1/8, per
    direction) → `n_div`, `shift_bidirectional` → `bidirectional`; the rest pass through."""
    options = dict(head_kwargs)
    if "shift_proportion" in options:
        options["n_div"] = parse_proportion(options.pop("shift_proportion"))
    if "shift_bidirectional" in options:
        options["bidirectional"] = options.pop("shift_bidirectional")
    return options
