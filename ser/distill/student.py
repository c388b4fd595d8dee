"""Cross-modal conditional teacher–student training (reference §5): `ser distill`.

For every fold of the teacher's protocol:
1. Out-of-fold teacher predictions on the fold's training utterances (cross-fitting): the
   training part is cut into `crossfit_parts` groups; a teacher with the teacher run's exact
   configuration is trained on the other groups (dev = the fold's dev, never its test) and
   predicts the held-out group, deterministically and with MC dropout (`mc_samples` passes)
   for the spread. Cached in <teacher run>/fold<K>/crossfit/ so several students share them.
2. The student's training targets mix truth and teacher per utterance and dimension with the
   chosen quality estimate (targets.py); dev and test keep the ground truth.
3. Unlabelled utterances (in the manifest with audio and a transcript but no target, e.g. no
   ratings) join the student's training part with the teacher's prediction as their target when
   `unlabelled=True` (`--unlabelled`); the fold's own teacher labels them. One is used for a fold
   unless its speaker or session occurs in the fold's test part.
4. The ordinary trainer trains the audio-only student head on those targets.

Why cross-fitting: a teacher's predictions on its own training utterances have memorised their
labels, so neither the targets nor any error-based quality estimate would be honest.

Why unlabelled utterances: on the labelled utterances alone a teacher adds no information the
labels lack (for a linear student, regressing a linear teacher's in-sample fit onto the audio
features gives exactly the audio-only fit), so the student gains little there. Transcribed but
unrated speech is plentiful (MSP-Podcast, ASR transcripts); the teacher's labels on it give the
student more supervision than the ratings alone. Whether that helps depends on the teacher: on
the synthetic corpus it did with 30% of the utterances rated and did not with 50% (README).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ser.data.fold import Fold
from ser.data.workspace import Workspace
from ser.errors import TrainingError, UserInputError
from ser.features.output_lock import exclusive_output
from ser.training import run_dir as files
from ser.training.batching import sorted_batches
from ser.training.config import TrainConfig
from ser.training.dimensional import DimensionalTask
from ser.distill.targets import (
    QUALITY_ESTIMATES,
    categorical_weights,
    dimensional_weights,
    mix_categorical,
    mix_dimensional,
    soften,
)
from ser.training.loop import ProgressCallback, train_fold
from ser.training.protocol import fold_dir_name, protocol_folds, select_folds
from ser.training.recipes import refuse_nonpositive
from ser.training.tasks import CategoricalTask, task_from_dict
from ser.distill.teacher import MultimodalTrainingData, load_multimodal_data, text_cache_path
from ser.training.training_data import FeatureScaler, TrainingData

CROSSFIT = "crossfit"
DISTILL = "distill.json"


@dataclass(frozen=True)
class DistillConfig:
    """How the student's targets are made (see targets.py for the estimates)."""

    quality: str = "mc-dropout"
    alpha: float = 0.5  # the largest weight the teacher gets
    temperature: float = 1.0  # τ of the quality estimate
    soft_temperature: float = 2.0  # T of the teacher's soft labels (categorical)
    crossfit_parts: int = 3
    mc_samples: int = 10
    unlabelled: bool = False  # teach the student on the teacher's labels of unlabelled utterances too

    def validate(self) -> None:
        if self.quality not in QUALITY_ESTIMATES:
            raise UserInputError(f"unknown quality estimate {self.quality!r}",
                                 f"choose one of: {', '.join(QUALITY_ESTIMATES)}")
        if not 0 <= self.alpha <= 1:
            raise UserInputError(f"--alpha {self.alpha} is outside [0, 1]")
        at_least_two = (("--crossfit-parts", self.crossfit_parts, "each part is predicted by a head of the rest"),
                        ("--mc-samples", self.mc_samples, "the teacher's quality is the spread of its dropout passes"))
        for flag, value, why in at_least_two:
            if value < 2:
                raise UserInputError(f"{flag} must be 2 or more, not {value}", why)
        refuse_nonpositive({"--temperature": self.temperature, "--soft-temperature": self.soft_temperature})

    def tag(self) -> str:
        """Run-name fragment, e.g. `distill-mc-dropout-a0.5` (`-unlabelled` added with unlabelled rows)."""
        return (f"distill-{self.quality}-a{self.alpha:g}" + (f"-t{self.temperature:g}" if self.temperature != 1 else "")
                + ("-unlabelled" if self.unlabelled else ""))


@dataclass(frozen=True)
class SoftLabelTask(CategoricalTask):
    """Categorical task trained on soft labels (N, C); scored on their argmax (one-hot truth on
    dev and test, so the scores are the ordinary ones)."""

    def configured(self, label_smoothing: float) -> "SoftLabelTask":
        return SoftLabelTask(self.labels, label_smoothing)

    def fitted(self, train_targets: torch.Tensor) -> "SoftLabelTask":
        return self

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict:
        return super().evaluate(outputs, targets.argmax(axis=1))

    def predictions(self, ids: list[str], outputs: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
        return super().predictions(ids, outputs, targets.argmax(axis=1))


@torch.no_grad()
def mc_dropout_outputs(
    head: nn.Module, data: MultimodalTrainingData, rows: np.ndarray, batch_size: int, samples: int, seed: int,
    scaler: FeatureScaler | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Head outputs on `rows` in eval mode (N, C) and `samples` passes with only dropout active (S, N, C);
    `scaler` is the feature standardisation the head was trained with (None: raw features)."""
    groups = sorted_batches(data.lengths[rows], batch_size)
    order = torch.from_numpy(np.concatenate(groups))

    def run_once() -> np.ndarray:
        pieces = [head(x, lengths, *extra).float().cpu() for x, lengths, _, *extra in
                  data.batches([rows[g] for g in groups], scaler)]
        restored = torch.empty(len(rows), pieces[0].shape[1])
        restored[order] = torch.cat(pieces)  # (N, C) back in the order of `rows`
        return restored.numpy()

    head.eval()
    deterministic = run_once()
    for module in head.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    torch.manual_seed(seed)
    passes = np.stack([run_once() for _ in range(samples)])  # (S, N, C)
    head.eval()
    return deterministic, passes


def saved_scaler(model_path: Path, device: torch.device) -> FeatureScaler | None:
    """The feature standardisation stored in a model.pt (None when the head was trained on raw features)."""
    saved = files.load_torch(model_path)["feature_scaler"]
    return None if saved is None else FeatureScaler(saved["mean"].to(device), saved["std"].to(device))


def crossfit_parts(fold: Fold, parts: int, seed: int) -> list[Fold]:
    """Inner folds over the fold's training part: each part held out once; dev stays the fold's."""
    if len(fold.train) < 2 * parts:
        raise TrainingError(f"fold {fold.name} has too few training utterances for {parts}-part cross-fitting")
    order = np.random.default_rng(seed).permutation(len(fold.train))
    groups = np.array_split(order, parts)
    inner = []
    for j, group in enumerate(groups):
        held = set(group.tolist())
        train = [utt for i, utt in enumerate(fold.train) if i not in held]
        inner.append(Fold(f"{fold.name}-part{j}", train, list(fold.dev), [fold.train[i] for i in sorted(held)],
                          fold.dev_split))
    return inner


def _teacher_table(ids: list[str], task, eval_out: np.ndarray, passes: np.ndarray) -> pd.DataFrame:
    """id, value_<k> (manifest scale or class probabilities) and spread_<k> (MC-dropout std) from
    a head's eval outputs (N, K) and dropout passes (S, N, K)."""
    if isinstance(task, DimensionalTask):
        values, spread = task.denormalise(eval_out), passes.std(axis=0) * np.asarray(task.std)
    else:
        values = torch.softmax(torch.from_numpy(eval_out), dim=1).numpy()
        spread = torch.softmax(torch.from_numpy(passes), dim=2).numpy().std(axis=0)
    table = pd.DataFrame({"id": ids})
    for k in range(values.shape[1]):
        table[f"value_{k}"], table[f"spread_{k}"] = values[:, k], spread[:, k]
    return table


def teacher_out_of_fold(
    teacher: TrainConfig, data: MultimodalTrainingData, fold: Fold, out_dir: Path, settings: DistillConfig
) -> pd.DataFrame:
    """Cross-fitted teacher predictions for every training utterance of `fold` (cached as
    oof-<P>parts-<S>mc.csv, the parts' heads under <P>parts/): columns id, value_<k> (manifest scale,
    or class probabilities) and spread_<k> (MC dropout std). Students of one teacher fold share
    them: a second process that asks while the first computes them waits, then reads them."""
    parts_dir = out_dir / f"{settings.crossfit_parts}parts"  # another --crossfit-parts: other heads
    cached = out_dir / f"oof-{settings.crossfit_parts}parts-{settings.mc_samples}mc.csv"
    with exclusive_output(parts_dir, directory=True, wait=True):
        if cached.is_file():
            return pd.read_csv(cached, dtype={"id": str})
        tables = []
        for j, inner in enumerate(crossfit_parts(fold, settings.crossfit_parts, teacher.seed)):
            part_dir = parts_dir / f"part{j}"
            train_fold(teacher, data, inner, part_dir)
            head = files.load_model(part_dir / files.MODEL).to(data.device)
            task = task_from_dict(files.read_json(part_dir / files.CONFIG)["task_state"])
            rows = data.positions(inner.test)
            eval_out, passes = mc_dropout_outputs(head, data, rows, 2 * teacher.recipe.batch_size,
                                                  settings.mc_samples, teacher.seed + j,
                                                  saved_scaler(part_dir / files.MODEL, data.device))
            tables.append(_teacher_table(inner.test, task, eval_out, passes))
        result = pd.concat(tables, ignore_index=True)
        files.write_csv(cached, result)
        return result


def fold_unlabelled(data: TrainingData, fold: Fold) -> list[str]:
    """The unlabelled utterances a fold's student may train on: none whose speaker or session
    (where the manifest has them) occurs in the fold's test part."""
    if not data.unlabelled_ids:
        return []
    table = data.table.set_index("id")
    held = table.loc[list(fold.test)]
    candidates = table.loc[data.unlabelled_ids]
    keep = np.ones(len(candidates), dtype=bool)
    for column in ("speaker", "session"):
        if column in table.columns:
            keep &= ~candidates[column].isin(set(held[column].dropna())).to_numpy()
    return list(candidates.index[keep])


def teacher_on_unlabelled(
    teacher_fold_dir: Path, data: MultimodalTrainingData, ids: list[str], batch_size: int, settings: DistillConfig,
    seed: int,
) -> pd.DataFrame:
    """The fold's teacher (trained on the fold's training part only) on unlabelled utterances:
    columns id, value_<k>, spread_<k> as in `teacher_out_of_fold` (cached beside its predictions)."""
    cached = teacher_fold_dir / CROSSFIT / f"unlabelled-{settings.mc_samples}mc.csv"
    if cached.is_file():
        table = pd.read_csv(cached, dtype={"id": str})
        if set(table["id"]) == set(ids):
            return table
    model = teacher_fold_dir / files.MODEL
    head = files.load_model(model).to(data.device)
    task = task_from_dict(files.read_json(teacher_fold_dir / files.CONFIG)["task_state"])
    eval_out, passes = mc_dropout_outputs(head, data, data.positions(ids), batch_size, settings.mc_samples, seed,
                                          saved_scaler(model, data.device))
    table = _teacher_table(ids, task, eval_out, passes)
    files.write_csv(cached, table)
    return table


def _values(table: pd.DataFrame, ids: list[str], prefix: str) -> np.ndarray:
    """The `<prefix>_<k>` columns of a teacher table for `ids`, in order → (N, K)."""
    width = sum(column.startswith("value_") for column in table.columns)
    return table.set_index("id").loc[ids, [f"{prefix}_{k}" for k in range(width)]].to_numpy()


def student_targets(
    data: MultimodalTrainingData, fold: Fold, oof: pd.DataFrame, settings: DistillConfig,
    unlabelled: pd.DataFrame | None = None,
) -> tuple[torch.Tensor, dict]:
    """All rows' targets with the fold's training rows mixed from truth and teacher, the teacher's
    labels on the `unlabelled` table's utterances, plus a summary of the weights."""
    rows = data.positions(fold.train)
    teacher, spread = _values(oof, fold.train, "value"), _values(oof, fold.train, "spread")  # (N, K) each
    truth = data.targets.cpu().numpy()
    dimensional = isinstance(data.task, DimensionalTask)
    if dimensional:
        weights = dimensional_weights(settings.quality, teacher, truth[rows], spread, settings.alpha, settings.temperature)
        targets = truth.astype(np.float32).copy()
        targets[rows] = mix_dimensional(truth[rows], teacher, weights)
        names = list(data.task.dimensions)
    else:
        weights = categorical_weights(settings.quality, teacher, truth[rows], spread, settings.alpha, settings.temperature)
        targets = np.zeros((len(truth), teacher.shape[1]), dtype=np.float32)  # (N, C); unlabelled rows stay 0
        labelled = truth >= 0
        targets[labelled] = np.eye(teacher.shape[1], dtype=np.float32)[truth[labelled]]  # one-hot truth
        targets[rows] = mix_categorical(truth[rows], teacher, weights, settings.soft_temperature)
        names = ["label"]
    summary = {f"mean_weight_{name}": float(weights[:, k].mean()) for k, name in enumerate(names)}
    if unlabelled is not None and len(unlabelled):
        ids = list(unlabelled["id"])
        values = _values(unlabelled, ids, "value")
        targets[data.positions(ids)] = values if dimensional else soften(values, settings.soft_temperature)
    summary["unlabelled_used"] = 0 if unlabelled is None else len(unlabelled)
    return torch.from_numpy(targets).to(data.device), summary


def student_data(data: MultimodalTrainingData, targets: torch.Tensor):
    """Audio-only training data whose targets are the student's (features shared, not copied)."""
    audio = data.audio_only()
    task = audio.task if isinstance(audio.task, DimensionalTask) else SoftLabelTask(audio.task.labels)
    return dataclasses.replace(audio, targets=targets, task=task)


def _check_teacher_fold(teacher_fold_dir: Path, fold: Fold) -> None:
    """The teacher run's fold must have been tested on exactly this fold's test utterances."""
    predictions = teacher_fold_dir / files.PREDICTIONS
    if not predictions.is_file():
        raise TrainingError(f"the teacher has no finished {teacher_fold_dir.name}",
                            f"train it first: ser train --teacher … --fold {teacher_fold_dir.name[4:]}")
    tested = set(pd.read_csv(predictions, dtype={"id": str})["id"])
    if tested != set(fold.test):
        raise TrainingError(f"the teacher's {teacher_fold_dir.name} was tested on other utterances than this fold",
                            "distil with the same manifest and protocol as the teacher")


def distill_fold(
    student: TrainConfig, teacher: TrainConfig, data: MultimodalTrainingData, fold: Fold,
    teacher_fold_dir: Path, out_dir: Path, settings: DistillConfig, progress: ProgressCallback | None = None,
) -> dict:
    """Train one audio-only student on one fold; writes the run directory plus distill.json (a fold
    that another process is training is refused before anything is written: OutputBusyError)."""
    _check_teacher_fold(teacher_fold_dir, fold)
    with exclusive_output(out_dir, directory=True):
        return _distill_fold(student, teacher, data, fold, teacher_fold_dir, out_dir, settings, progress)


def _distill_fold(
    student: TrainConfig, teacher: TrainConfig, data: MultimodalTrainingData, fold: Fold,
    teacher_fold_dir: Path, out_dir: Path, settings: DistillConfig, progress: ProgressCallback | None,
) -> dict:
    oof = teacher_out_of_fold(teacher, data, fold, teacher_fold_dir / CROSSFIT, settings)
    extra = fold_unlabelled(data, fold) if settings.unlabelled else []
    labelled_by_teacher = (teacher_on_unlabelled(teacher_fold_dir, data, extra, 2 * teacher.recipe.batch_size,
                                                 settings, teacher.seed) if extra else None)
    targets, summary = student_targets(data, fold, oof, settings, labelled_by_teacher)
    files.write_json(Path(out_dir) / DISTILL, {**dataclasses.asdict(settings), **summary,
                                               "teacher_fold_dir": str(teacher_fold_dir.resolve())})
    student_fold = dataclasses.replace(fold, train=list(fold.train) + extra)
    return train_fold(student, student_data(data, targets), student_fold, out_dir, progress)


def read_teacher_config(teacher_run: Path) -> TrainConfig:
    """The TrainConfig of a teacher run directory (from any of its fold directories)."""
    configs = sorted(Path(teacher_run).glob("fold*/" + files.CONFIG))
    if not configs:
        raise UserInputError(f"{teacher_run} holds no trained folds", "pass a run directory of `ser train --teacher`")
    config = TrainConfig.from_dict(files.read_json(configs[0]))
    if not config.text_model:
        raise UserInputError(f"{teacher_run} is not a teacher run (no text model)",
                             "train one with `ser train --teacher --text-model M`")
    return config


def run_distillation(
    workdir: Path,
    teacher_run: Path,
    head: str,
    settings: DistillConfig = DistillConfig(),
    which: str = "all",
    head_kwargs: dict | None = None,
    seed: int | None = None,
    manifest: Path | None = None,
    out: Path | None = None,
    run_name: str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    **recipe_overrides,
) -> tuple[Path, dict[str, dict]]:
    """`ser distill`: an audio-only `head` taught by the teacher run, fold by fold of its protocol.

    `recipe_overrides` (epochs, lr, batch_size, …, standardize) set the student's recipe; unset
    (None) ones keep the head's recipe, and `standardize` defaults to the teacher's."""
    settings.validate()
    teacher_run = Path(teacher_run)
    teacher = read_teacher_config(teacher_run)
    workspace = Workspace(Path(workdir))
    manifest_path = workspace.find_manifest(manifest)
    audio_cache = workspace.find_cache(teacher.corpus, teacher.model)
    text_cache = text_cache_path(workspace, teacher.corpus, teacher.text_model)
    data = load_multimodal_data(manifest_path, audio_cache, text_cache, teacher.task, teacher.layers, device,
                                unlabelled=settings.unlabelled)
    protocol = dict(task=teacher.task, layers=teacher.layers, folds=teacher.folds, k=teacher.k, dev=teacher.dev,
                    dev_fraction=teacher.dev_fraction, fold_seed=teacher.fold_seed, model=teacher.model,
                    corpus=teacher.corpus)
    inherited = {"standardize": teacher.standardize}  # the student sees the audio features as the teacher did
    overrides = {name: value for name, value in recipe_overrides.items() if value is not None}
    student = TrainConfig.create(head, head_kwargs, seed=teacher.seed if seed is None else seed, **protocol,
                                 **{**inherited, **overrides})
    run_name = run_name or f"{settings.tag()}-{student.run_name()}"
    run_dir = Path(out) if out is not None else workspace.runs_root(teacher.corpus, teacher.model) / run_name
    results = {}
    for index, fold in select_folds(protocol_folds(teacher, data), which):
        name = fold_dir_name(index)
        results[name] = distill_fold(student, teacher, data, fold, teacher_run / name, run_dir / name, settings, progress)
    if which == "all":
        files.write_json(run_dir / files.SUMMARY, files.fold_summary(results, run_dir))
    return run_dir, results
