"""A dev share made of whole training speakers (`--dev speaker`, and `--dev auto` where a training
part holds at least 4 speakers).

A dev split that shares speakers with training rewards remembering voices: on the synthetic corpus
the probe scored 71.5% UA on a random dev split against 55.5% on the speaker-disjoint test fold.

The rule, deterministic for a seed: draw seeded permutations of the training speakers (sorted
names, `numpy.random.default_rng(seed)`); in each, take the prefix of speakers whose utterance count
is closest to `fraction` of the part (at least one speaker held out, at least one left to train).
The first draw whose share lies within ±25% of `fraction` (15-25% for 20%) and that leaves every
class both in dev and in the remaining training part is the dev set. When no draw of `DRAWS`
qualifies, the draw that covers every class with the share closest to `fraction` is taken, else
(no draw covers every class) the closest share: `covers` then says False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS = 200  # seeded speaker permutations tried
SHARE_TOLERANCE = 0.25  # relative: a share within ±25% of the fraction is accepted


@dataclass(frozen=True)
class HeldOutSpeakers:
    held: np.ndarray  # (N,) bool: the rows whose speaker is in dev
    speakers: tuple[str, ...]  # the dev speakers, sorted
    share: float  # dev utterances / training-part utterances
    covers: bool  # every class is in dev and in the remaining training part


def held_out_speakers(speakers: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int) -> HeldOutSpeakers:
    """Whole speakers that hold ≈ `fraction` of the rows (see the module's rule). `labels` None: no
    class to cover (dimensional targets). Needs at least 2 distinct speakers."""
    speakers = np.asarray(speakers).astype(str)
    names, speaker_of_row = np.unique(speakers, return_inverse=True)  # sorted names
    if len(names) < 2:
        raise ValueError(f"whole-speaker dev needs at least 2 speakers, the training part has {len(names)}")
    counts = np.bincount(speaker_of_row, minlength=len(names))  # (S,) utterances per speaker
    if labels is None:
        classes_of = [frozenset()] * len(names)
    else:
        labels = np.asarray(labels).astype(str)
        classes_of = [frozenset(labels[speaker_of_row == s]) for s in range(len(names))]
    every_class = frozenset().union(*classes_of)
    rng = np.random.default_rng(seed)
    target = fraction * len(speakers)
    best, best_key = None, None
    for _ in range(DRAWS):
        order = rng.permutation(len(names))
        sizes = np.cumsum(counts[order])[:-1]  # prefixes that leave at least one training speaker
        cut = int(np.argmin(np.abs(sizes - target))) + 1  # ties: the shorter prefix
        dev, rest = order[:cut], order[cut:]
        share = float(sizes[cut - 1]) / len(speakers)
        covers = (frozenset().union(*(classes_of[s] for s in dev)) == every_class
                  and frozenset().union(*(classes_of[s] for s in rest)) == every_class)
        if covers and abs(share - fraction) <= SHARE_TOLERANCE * fraction + 1e-9:
            best = (dev, share, covers)
            break
        key = (not covers, abs(share - fraction))
        if best_key is None or key < best_key:
            best, best_key = (dev, share, covers), key
    dev, share, covers = best
    return HeldOutSpeakers(np.isin(speaker_of_row, dev), tuple(sorted(names[dev])), share, covers)
