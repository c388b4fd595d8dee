"""Train K runs × folds of one head family as ONE stacked model (`train_group`).

Each member is what `train_fold` would train on its own: its seed's initialisation and data
order, its fold's rows, its own optimiser state and learning-rate schedule, dev-based epoch
selection, a resume checkpoint in its run directory (a solo run's checkpoint: either kind of run
resumes the other's) and, at the end, the same run-directory files written by the same code
(`write_fold_results`). Only the arithmetic is shared: one forward/backward for all K members
(heads/stacked.py) and one optimiser step (stacked_optim.py).

A member that diverges (non-finite loss or outputs) stops with the `DivergedError` a solo run
raises; a member that cannot start fails with its own error; the others go on.
Members may stand at different epochs after an interruption: each trains only in the epochs it
has not finished, and a finished member simply sits out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ser.data.fold import Fold
from ser.errors import DivergedError, TrainingError
from ser.heads.stacked import MemberBatch, rng_state, stacked_model
from ser.training import run_dir as files
from ser.training.adam import Adam
from ser.training.batching import bucketed_batches, sorted_batches
from ser.training.config import TrainConfig
from ser.training.divergence import check_loss, check_outputs
from ser.training.loop import (CHECKPOINT_EVERY_SECONDS, evaluation_due, fresh_state, random_state, record_test,
                               scores_test, start_fold, write_fold_results)
from ser.training.recipes import build_optimizer, lr_at
from ser.training.stacked_optim import StackedAdam
from ser.training.training_data import FeatureScaler, TrainingData

# (member index, finished epoch (1-based), total epochs, history row)
MemberProgress = Callable[[int, int, int, dict], None]


@dataclass(frozen=True)
class MemberSpec:
    """One run × fold to train in a group."""

    config: TrainConfig
    fold: Fold
    out_dir: Path


@dataclass
class MemberResult:
    metrics: dict | None = None
    error: Exception | None = None  # what stopped the member (DivergedError: it diverged)


@dataclass
class _Member:
    spec: MemberSpec
    task: object
    head: torch.nn.Module
    saved_config: dict
    rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # train, dev, test positions
    scaler: FeatureScaler | None
    optimizer: Adam  # a solo run's optimiser: the checkpoint format
    state: dict
    rng: torch.Tensor  # this member's torch RNG state (SpecAugment draws)
    checkpoint_rng: dict = field(default_factory=dict)
    error: Exception | None = None
    loss_sum: float = 0.0
    seen: int = 0
    steps_before: int = 0  # the member's updates when the epoch began (update cadence, loop.evaluation_due)
    scored: bool = False  # whether the last epoch ended with a dev pass
    lr: float = 0.0
    last_row: dict = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.rows[0]) // self.spec.config.recipe.batch_size)

    @property
    def epochs(self) -> int:
        return self.spec.config.recipe.total_epochs(self.steps_per_epoch)  # a step budget ends inside its last epoch

    @property
    def alive(self) -> bool:
        return self.error is None


def _start_member(spec: MemberSpec, data: TrainingData, scalers: dict, held: ExitStack) -> _Member | dict:
    """What `train_fold` does before its first epoch, for one member (its lock taken into `held`,
    config.json written); a finished member's metrics.json dict instead when it has nothing left to train."""
    out_dir = Path(spec.out_dir)
    if spec.config.trains_solo:
        raise TrainingError(f"{out_dir}: a --refit or --frequency-warp run trains as no stacked group does (a second "
                            "head, warped frames)", "train it on its own (train_fold; ser sweep does so itself)")
    started = start_fold(spec.config, data, spec.fold, out_dir, held)
    if isinstance(started, dict):
        return started
    task, head, saved_config, rows, config = started.task, started.head, started.saved_config, started.rows, started.config
    spec = dataclasses.replace(spec, config=config)  # the features' defaults resolved
    scaler = None
    if config.standardize:
        key = rows[0].tobytes()  # members of one fold share its statistics
        if key not in scalers:
            scalers[key] = data.feature_scaler(rows[0])
        scaler = scalers[key]
    optimizer = build_optimizer(head, config.recipe)
    state = fresh_state()
    rng = rng_state(data.device)
    checkpoint_rng = random_state()
    checkpoint_path = out_dir / files.CHECKPOINT
    if checkpoint_path.is_file():
        saved = files.load_torch(checkpoint_path)
        head.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state, checkpoint_rng = saved["state"], saved["rng"]
        rng = checkpoint_rng["torch"] if data.device.type != "cuda" else checkpoint_rng["cuda"][_cuda_index(data.device)]
    return _Member(spec, task, head, saved_config, rows, scaler, optimizer, state, rng, checkpoint_rng)


class _Group:
    """The stacked parameters, forward and optimiser of the live members."""

    def __init__(self, members: list[_Member], data: TrainingData):
        self.members, self.data = members, data
        heads = [m.head for m in members]
        self.model = stacked_model(heads, data.device)
        self.names = {p: name for name, p in heads[0].named_parameters()}
        self.params = {name: torch.stack([dict(h.named_parameters())[name].detach() for h in heads]).requires_grad_()
                       for name in dict(heads[0].named_parameters())}
        decay = {}
        for group in members[0].optimizer.param_groups:
            decay.update({self.names[p]: group["weight_decay"] for p in group["params"]})
        self.optimizer = StackedAdam(self.params, decay, members[0].spec.config.recipe)
        for k, m in enumerate(members):
            m_names = {p: name for name, p in m.head.named_parameters()}
            self.optimizer.load_member(k, m.optimizer, m_names)
        self.empty = (torch.zeros(0, data.num_layers, 1, data.dim, device=data.device),
                      torch.zeros(0, dtype=torch.long, device=data.device))

    def member_state_dict(self, k: int) -> dict:
        """Member k's head state dict (its slice of the stacked parameters, buffers from its head)."""
        head = self.members[k].head
        with torch.no_grad():
            for name, p in head.named_parameters():
                p.copy_(self.params[name][k])
        return {name: value.detach().cpu().clone() for name, value in head.state_dict().items()}

    def fetch(self, k: int, rows: np.ndarray | None, cache: dict) -> MemberBatch:
        """Member k's batch of `rows` (standardised by its fold's scaler); shared when identical."""
        if rows is None:
            return self.empty
        scaler = self.members[k].scaler
        key = (rows.tobytes(), id(scaler))
        if key not in cache:
            x, lengths, _ = next(iter(self.data.batches([rows], scaler)))
            cache[key] = (x, lengths)
        return cache[key]

    @torch.no_grad()
    def predict(self, which: int, batch_size: int, members: list[int]) -> dict[int, np.ndarray]:
        """Outputs (N, C) of `members` on their rows[which] (dev: 1, test: 2), in row order (none
        for a member without such rows)."""
        members = [k for k in members if len(self.members[k].rows[which])]
        if not members:
            return {}
        orders = {k: sorted_batches(self.data.lengths[self.members[k].rows[which]], batch_size) for k in members}
        pieces: dict[int, list[torch.Tensor]] = {k: [] for k in members}
        for i in range(max(len(order) for order in orders.values())):
            cache: dict = {}
            inputs = []
            for k in range(len(self.members)):
                chosen = orders[k][i] if k in orders and i < len(orders[k]) else None
                inputs.append(self.fetch(k, None if chosen is None else self.members[k].rows[which][chosen], cache))
            logits = self.model.forward(self.params, inputs, training=False)  # (K, B, C)
            for k in members:
                if i < len(orders[k]):
                    pieces[k].append(logits[k, : len(orders[k][i])].float().cpu())
        outputs = {}
        for k in members:
            stacked = torch.cat(pieces[k])  # (N, C) in batch order
            restored = torch.empty_like(stacked)
            restored[torch.from_numpy(np.concatenate(orders[k]))] = stacked
            outputs[k] = restored.numpy()
        return outputs


def _score(member: _Member, data: TrainingData, which: int, outputs: np.ndarray, epoch: int) -> tuple[dict, float]:
    """(metrics, loss) of a member's outputs on its rows[which]; DivergedError if one is not finite."""
    check_outputs(outputs, ("train", "dev", "test")[which], epoch)
    targets = data.targets[torch.from_numpy(member.rows[which]).to(data.device)].cpu()
    loss = float(member.task.loss(torch.from_numpy(outputs), targets))
    return member.task.evaluate(outputs, targets.numpy()), loss


def _train_epoch(group: _Group, epoch: int, training: list[int]) -> None:
    """One epoch of the members in `training` (indices), each over its own batches."""
    data, members = group.data, group.members
    orders = {}
    for k in training:
        m = members[k]
        train_rows = m.rows[0]
        recipe = m.spec.config.recipe
        orders[k] = [train_rows[b] for b in bucketed_batches(data.lengths[train_rows], recipe.batch_size,
                                                              m.spec.config.seed, epoch)]
        if recipe.max_steps is not None:
            orders[k] = orders[k][: recipe.max_steps - m.state["step"]]
        m.loss_sum, m.seen, m.steps_before = 0.0, 0, m.state["step"]
    for i in range(max(len(order) for order in orders.values())):
        stepping = [k for k in training if i < len(orders[k]) and members[k].alive]
        if not stepping:
            break
        cache: dict = {}
        inputs = [group.fetch(k, orders[k][i] if k in stepping else None, cache) for k in range(len(members))]
        rngs = [m.rng for m in members]
        logits = group.model.forward(group.params, inputs, training=True, rng_states=rngs)  # (K, B, C)
        lrs = torch.zeros(len(members), dtype=torch.float64, device=data.device)
        total = logits.new_zeros(())
        active = torch.zeros(len(members), dtype=torch.bool, device=data.device)
        for k in stepping:
            m = members[k]
            m.rng = rngs[k]
            recipe = m.spec.config.recipe
            rows = orders[k][i]
            targets = data.targets[torch.from_numpy(rows).to(data.device)]
            loss = m.task.loss(logits[k, : len(rows)], targets)
            m.lr = lr_at(m.state["step"], recipe, m.steps_per_epoch)
            step_loss = float(loss.detach())
            try:
                check_loss(step_loss, epoch + 1, m.state["step"] + 1, m.lr)
            except DivergedError as error:
                m.error = error
                continue
            lrs[k] = m.lr
            active[k] = True
            total = total + loss
            m.state["step"] += 1
            m.loss_sum += step_loss * len(rows)
            m.seen += len(rows)
        group.optimizer.zero_grad()
        if active.any():
            total.backward()
            group.optimizer.step(lrs, active)


def _end_epoch(group: _Group, epoch: int, trained: list[int], started: float) -> None:
    """Dev/test scores, history row, dev-based selection of the members trained this epoch."""
    data = group.data
    live = [k for k in trained if group.members[k].alive]
    for k in live:  # under an update cadence, a member is scored only in the epochs where it falls
        m = group.members[k]
        m.scored = evaluation_due(m.steps_before, m.state["step"], m.spec.config.recipe.eval_every_updates,
                                  epoch + 1 == m.epochs)
        if not m.scored:
            m.state["epoch"] = epoch + 1
    live = [k for k in live if group.members[k].scored]
    if not live:
        return
    eval_batch = 2 * max(group.members[k].spec.config.recipe.batch_size for k in live)
    testing = [k for k in live if scores_test(group.members[k].spec.config, len(group.members[k].rows[2]), epoch,
                                              group.members[k].epochs)]  # their last epoch, or every one (curve)
    dev, test = group.predict(1, eval_batch, live), group.predict(2, eval_batch, testing)
    for k in live:
        m = group.members[k]
        task, state, config = m.task, m.state, m.spec.config
        try:
            dev_metrics, dev_loss = _score(m, data, 1, dev[k], epoch + 1)
            test_metrics = _score(m, data, 2, test[k], epoch + 1)[0] if k in test else None
        except DivergedError as error:
            m.error = error
            continue
        row = {"epoch": epoch + 1, **({"step": state["step"]} if m.spec.config.recipe.eval_every_updates else {}),
               "train_loss": m.loss_sum / max(m.seen, 1), "dev_loss": dev_loss}
        row.update({f"dev_{name}": dev_metrics[name] for name in task.history_metrics})
        if config.record_test_curve and test_metrics:
            row.update({f"test_{name}": test_metrics[name] for name in task.history_metrics})
        row.update({"lr": m.lr, "seconds": time.perf_counter() - started})
        state["history"].append(row)
        if dev_metrics[task.selection_metric] > state["best_score"]:
            state.update(best_score=dev_metrics[task.selection_metric], best_epoch=epoch + 1, best_dev=dev_metrics,
                         best_state=group.member_state_dict(k))
        record_test(state, test_metrics, epoch, task.selection_metric, config.record_test_curve)
        state["epoch"] = epoch + 1
        m.last_row = row


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _checkpoint(group: _Group, k: int) -> None:
    """Member k's resume checkpoint, in a solo run's format (its RNG stream where a solo run keeps it)."""
    m = group.members[k]
    model = group.member_state_dict(k)
    optimizer = group.optimizer.member_state(k, m.optimizer, {p: n for n, p in m.head.named_parameters()}, m.lr)
    rng = dict(m.checkpoint_rng)
    if group.data.device.type == "cuda":
        rng["cuda"] = list(rng["cuda"])
        rng["cuda"][_cuda_index(group.data.device)] = m.rng
    else:
        rng["torch"] = m.rng
    files.save_torch(Path(m.spec.out_dir) / files.CHECKPOINT,
                     {"model": model, "optimizer": optimizer, "rng": rng, "state": m.state})


def train_group(specs: list[MemberSpec], data: TrainingData, progress: MemberProgress | None = None,
                checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS) -> list[MemberResult]:
    """Train every member of `specs` (heads that stack: see heads/stacked.stack_key) as one model.

    Returns one result per spec, in order: metrics.json's dict, or the error that stopped that
    member (a member that fails to start or diverges does not stop the others).
    """
    with ExitStack() as held:  # each member's fold lock (loop.start_fold), until its files are written
        return _train_members(specs, data, progress, checkpoint_seconds, held)


def _train_members(specs: list[MemberSpec], data: TrainingData, progress: MemberProgress | None,
                   checkpoint_seconds: float, held: ExitStack) -> list[MemberResult]:
    results = [MemberResult() for _ in specs]
    members, indices, scalers = [], [], {}
    for index, spec in enumerate(specs):
        try:
            started = _start_member(spec, data, scalers, held)
        except Exception as error:  # noqa: BLE001 — one member's bad option fails that member only
            results[index].error = error
            continue
        if isinstance(started, dict):
            results[index].metrics = started
        else:
            members.append(started)
            indices.append(index)
    if not members:
        return results
    group = _Group(members, data)
    last_checkpoint = -math.inf
    for epoch in range(min(m.state["epoch"] for m in members), max(m.epochs for m in members)):
        training = [k for k, m in enumerate(members) if m.alive and m.state["epoch"] == epoch < m.epochs]
        if not training:
            continue
        started = time.perf_counter()
        _train_epoch(group, epoch, training)
        _end_epoch(group, epoch, training, started)
        write_now = time.perf_counter() - last_checkpoint >= checkpoint_seconds
        for k in training:
            if members[k].alive and write_now:
                _checkpoint(group, k)
            if members[k].alive and members[k].scored and progress is not None:
                progress(indices[k], epoch + 1, members[k].epochs, members[k].last_row)
        if write_now:
            last_checkpoint = time.perf_counter()
    group.model.release()
    for k, m in enumerate(members):
        if not m.alive:
            results[indices[k]].error = m.error
            continue
        results[indices[k]].metrics = write_fold_results(m.spec.config, data, m.task, m.head, m.state,
                                                         m.saved_config, m.scaler, m.rows[2], Path(m.spec.out_dir),
                                                         dev_rows=m.rows[1])
    return results
