"""The extraction loop: probe → plan batches → decode (reader thread) → forward → store (writer
thread), resumable through `ShardedCacheWriter`.

Problems with single utterances never stop the run with `on_error="skip"`: they are collected
with their reasons (and written to `<cache>.skipped.csv`); with `on_error="fail"` the first one
stops it after everything already finished has been stored. With a `group` of torchrun ranks
(distributed.py) each rank runs its share of the batches and the leader merges.
"""

from __future__ import annotations

import csv
import queue
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version  # the installed transformers' version without its 1.5 s import
from pathlib import Path
from typing import Sequence

import numpy as np

from ser.errors import AudioError, CacheError, UserInputError
from ser.features.audio import SAMPLE_RATE, load_audio, probe_audio
from ser.features.backbone import Backbone
from ser.features.batching import plan_batches
from ser.features.cache import FORMAT_VERSION, CacheReader
from ser.features.cache_writer import ShardedCacheWriter, UtteranceFeatures, existing_cache_is_complete
from ser.features.distributed import SingleProcess, leader_holds_output
from ser.features.fingerprint import changed_sources, fingerprint
from ser.features.handoff import put_unless_stopped
from ser.features.layer_spec import read_layer_spec
from ser.features import memory_guard
from ser.features.progress import ExtractionProgress
from ser.features.records import UtteranceRecord

FLUSH_BYTES = 256 * 2**20
QUEUE_DEPTH = 4


@dataclass
class ExtractionSummary:
    """What one `extract` call did."""

    cache_path: Path
    extracted: int  # utterances computed by this call
    reused: int  # utterances found finished (interrupted run, or a complete cache)
    skipped: dict[str, str] = field(default_factory=dict)  # id → reason
    audio_seconds: float = 0.0  # audio processed by this call
    wall_seconds: float = 0.0
    cache_bytes: int = 0
    skipped_csv: Path | None = None
    already_complete: bool = False
    repaired: dict[str, str] = field(default_factory=dict)  # id → damage found in the finished cache, re-extracted

    @property
    def real_time_factor(self) -> float:
        """Wall time per second of audio (below 1 is faster than real time)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0


def parse_layers(spec: str | None, num_layers: int) -> list[int]:
    """'0,4,8-12' → [0, 4, 8, 9, 10, 11, 12] (sorted, repeats merged); None → every layer."""
    if spec is None or not spec.strip():
        return list(range(num_layers))
    chosen = set(read_layer_spec(spec))
    bad = sorted(layer for layer in chosen if not 0 <= layer < num_layers)
    if bad:
        raise UserInputError(f"--layers {spec!r} is outside 0–{num_layers - 1}", f"the model has {num_layers} layers")
    return sorted(chosen)


def cache_identity(source: str, random_init: bool, layers: Sequence[int] | None, max_seconds: float | None,
                   manifest_sha256: str) -> dict:
    """The attributes that decide whether an existing cache (or partial run) may be reused."""
    identity = dict(source=source, random_init=bool(random_init), max_seconds=float(max_seconds or 0.0),
                    manifest_sha256=manifest_sha256, format_version=FORMAT_VERSION)
    if layers is not None:
        identity["layers"] = [int(layer) for layer in layers]
    return identity


def _read_batches(batches, max_seconds, out: queue.Queue, stop: threading.Event) -> None:
    """Reader thread: decode each batch's audio ahead of the model."""
    try:
        for batch in batches:
            loaded, failures = [], []
            for record in batch:
                try:
                    loaded.append((record, load_audio(record, max_seconds)))
                except AudioError as error:
                    failures.append(error)
            if not put_unless_stopped(out, (loaded, failures), stop):
                return
        put_unless_stopped(out, None, stop)
    except BaseException as error:  # surfaced by the main thread
        put_unless_stopped(out, error, stop)


class _BackgroundWriter:
    """Writer thread: pools, casts and writes shards every `flush_seconds` (or FLUSH_BYTES)."""

    def __init__(self, writer: ShardedCacheWriter, flush_seconds: float):
        self.writer = writer
        self.flush_seconds = flush_seconds
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._run, name="ser-cache-writer", daemon=True)
        self.thread.start()

    def put(self, items: list[tuple[str, np.ndarray, np.ndarray | None, str]]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(items)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        buffer: list[UtteranceFeatures] = []
        size, last_flush = 0, time.monotonic()
        while True:
            items = self.queue.get()
            if self.error is not None:
                if items is None:
                    return
                continue  # keep draining so the main thread never blocks
            try:
                if items is not None:
                    for utt_id, states, functionals, source_print in items:
                        buffer.append(UtteranceFeatures.from_float32(utt_id, states, source_print, functionals))
                        size += buffer[-1].features.nbytes
                due = time.monotonic() - last_flush >= self.flush_seconds or size >= FLUSH_BYTES
                if buffer and (items is None or due):
                    self.writer.write_shard(buffer)
                    buffer, size, last_flush = [], 0, time.monotonic()
            except BaseException as error:
                self.error = error
            if items is None:
                return


def model_failure(utt_id: str, seconds: float, error: BaseException) -> AudioError:
    """Why the model failed on one utterance; running out of memory says what to do about it."""
    text = str(error)
    crop = "crop long clips with --max-seconds (e.g. --max-seconds 30)"
    if isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text:
        return AudioError(utt_id, f"the model ran out of memory on this {seconds:.0f}-s clip: {crop}")
    if "could not create a primitive" in text:  # oneDNN's words when it cannot allocate a large input's buffers
        return AudioError(utt_id, f"oneDNN could not run the model on this {seconds:.0f}-s clip (\"could not create "
                                  f"a primitive\", most often memory running out): {crop}")
    return AudioError(utt_id, f"the model failed on it: {text.splitlines()[0] if text else type(error).__name__}")


def _forward_checked(backbone: Backbone, loaded: list[tuple[UtteranceRecord, np.ndarray]]):
    """Forward a batch; returns [(record, seconds, states)] and a list of AudioErrors.

    A failing batch is retried one utterance at a time; an utterance whose features are not
    finite under autocast is redone in full precision.
    """
    if backbone.batching == "single":  # group-norm models: only equal lengths together
        by_length: dict[int, list] = {}
        for record, wave in loaded:
            by_length.setdefault(len(wave), []).append((record, wave))
        groups = list(by_length.values())
    else:
        groups = [loaded] if loaded else []
    results, failures = [], []
    for group in groups:
        try:
            outputs = backbone.forward([wave for _, wave in group])
        except (RuntimeError, ValueError, MemoryError) as error:
            if len(group) > 1:
                for single in group:
                    more_results, more_failures = _forward_checked(backbone, [single])
                    results += more_results
                    failures += more_failures
                continue
            failures.append(model_failure(group[0][0].id, len(group[0][1]) / SAMPLE_RATE, error))
            continue
        for (record, wave), states in zip(group, outputs):
            if not np.isfinite(states).all():
                states = backbone.forward([wave], full_precision=True)[0]
            if not np.isfinite(states).all():
                failures.append(AudioError(record.id, "the model produced NaN/Inf features for it"))
                continue
            results.append((record, len(wave) / SAMPLE_RATE, states))
    return results, failures


def write_skipped_csv(path: Path, records: Sequence[UtteranceRecord], skipped: dict[str, str]) -> Path | None:
    """`id,path,reason` for every skipped utterance; removes a stale file when nothing was skipped."""
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    paths = {record.id: record.path for record in records}
    with open(path, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["id", "path", "reason"])
        for utt_id, reason in skipped.items():
            table.writerow([utt_id, paths.get(utt_id, ""), reason])
    return path


def extract(records: Sequence[UtteranceRecord], backbone: Backbone, out: str | Path, **options) -> ExtractionSummary:
    """Extract every layer of every record into the HDF5 cache `out` (resuming unfinished work),
    holding the exclusive lock on `out`: a second process writing the same output fails at once.

    Options (see `_extract_holding_lock`): manifest_sha256, layers, max_seconds, batch_seconds,
    on_error, overwrite, show_progress, flush_seconds, memory_budget, group (torchrun ranks: only
    the leader locks).
    """
    with leader_holds_output(options.get("group") or SingleProcess(), out):
        return _extract_holding_lock(records, backbone, out, **options)


def _extract_holding_lock(
    records: Sequence[UtteranceRecord],
    backbone: Backbone,
    out: str | Path,
    *,
    manifest_sha256: str = "",
    layers: Sequence[int] | None = None,
    max_seconds: float | None = None,
    batch_seconds: float | None = None,
    on_error: str = "skip",
    overwrite: bool = False,
    show_progress: bool = False,
    flush_seconds: float = 10.0,
    memory_budget: str | int | None = None,
    group: SingleProcess | None = None,
) -> ExtractionSummary:
    """The extraction itself; only the holder of `out`'s lock may call it.

    `layers`: indices of the backbone's hidden states to keep (default all). `batch_seconds`:
    padded audio per forward pass for batchable families (default 20 s on CPU, 200 s on GPU).
    `memory_budget`: bytes or "2GiB" one forward pass may use (default: $SER_MEMORY_BUDGET,
    else a share of available memory); a clip over it is skipped (features/memory_guard.py).
    `group`: the torchrun ranks sharing the work (default: this process alone).
    """
    started = time.perf_counter()
    group = group or SingleProcess()
    out = Path(out)
    if on_error not in ("skip", "fail"):
        raise UserInputError(f"--on-error must be skip or fail, not {on_error!r}")
    ids = [record.id for record in records]
    duplicates = sorted({utt for utt in ids if ids.count(utt) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise UserInputError(f"duplicate utterance ids: {', '.join(duplicates[:5])}", "every id must be unique")
    if not records:
        raise UserInputError("there are no utterances to extract", "check the manifest")
    layer_index = list(range(backbone.num_layers)) if layers is None else [int(layer) for layer in layers]
    identity = cache_identity(backbone.source, backbone.random_init, layer_index, max_seconds, manifest_sha256)
    skipped_csv_path = out.with_name(out.stem + ".skipped.csv")
    rebuild_from = None  # a finished cache some of whose sources changed or are damaged: reuse the rest of it
    repaired: dict[str, str] = {}  # id → what was damaged, re-extracted below
    if existing_cache_is_complete(out, identity, overwrite):
        with CacheReader(out) as cache:
            repaired = cache.damage(verify=True)  # "complete" only if every checksum holds
            if not repaired and not changed_sources([r for r in records if r.id in cache.lengths], cache.fingerprints,
                                                    max_seconds):
                return ExtractionSummary(out, 0, len(cache.ids), dict(cache.skipped), cache_bytes=out.stat().st_size,
                                         skipped_csv=skipped_csv_path if cache.skipped else None,
                                         already_complete=True)
        rebuild_from = out
    attrs = dict(
        identity, model=backbone.name, revision=backbone.revision, transformers_version=version("transformers"),
        sample_rate=SAMPLE_RATE, frame_rate=float(backbone.frame_rate), num_layers=len(layer_index), dim=backbone.dim,
        dtype="float16", model_num_layers=backbone.num_layers, batching=backbone.batching,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    def prepare_writer() -> ShardedCacheWriter:
        made = ShardedCacheWriter(out, attrs, overwrite, group.shard_suffix)
        if rebuild_from is not None and group.is_leader:
            made.adopt(rebuild_from)
        return made

    writer = group.leader_first(prepare_writer)

    def unchanged_done() -> set[str]:
        stored = writer.done_fingerprints()
        changed = changed_sources([r for r in records if r.id in stored], stored, max_seconds)
        return set(stored) - set(changed) - set(repaired)

    done = group.from_leader(unchanged_done)  # every rank plans from the same finished set
    written: set[str] = set()  # extracted by this rank in this call
    skipped: dict[str, str] = {}

    def failed(error: AudioError) -> None:
        if on_error == "fail":
            raise error
        skipped[error.utt_id] = error.reason

    # the leader's budget for every rank: the plan (and who does which batch) must be the same
    budget = group.from_leader(lambda: memory_guard.memory_budget(memory_budget, str(backbone.device)))
    planned = []
    for record in records:
        try:
            num_samples = probe_audio(record, max_seconds).num_samples
            memory_guard.check_forward_memory(backbone, record.id, num_samples, budget)
            planned.append((record, num_samples))
        except AudioError as error:
            if record.id not in done:
                failed(error)
    if batch_seconds is None:
        batch_seconds = 200.0 if str(backbone.device).startswith("cuda") else 20.0
    batches = [
        batch for batch in plan_batches(planned, backbone.batching, int(batch_seconds * SAMPLE_RATE))
        if any(record.id not in done for record in batch)
    ]
    samples = {record.id: num_samples for record, num_samples in planned}
    batches = [batches[i] for i in group.share([len(b) * max(samples[r.id] for r in b) for b in batches])]
    todo = sum(record.id not in done for batch in batches for record in batch)
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    stop = threading.Event()
    reader = threading.Thread(target=_read_batches, args=(batches, max_seconds, decoded, stop), daemon=True)
    background = _BackgroundWriter(writer, flush_seconds)
    extracted, audio_seconds = 0, 0.0
    reader.start()
    try:
        with ExtractionProgress(todo, f"extract {backbone.name}", enabled=show_progress) as progress:
            while (item := decoded.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                loaded, read_failures = item
                results, model_failures = _forward_checked(backbone, loaded)
                waves = {record.id: wave for record, wave in loaded}
                new = [(record.id, states[layer_index], backbone.utterance_functionals(waves[record.id]),
                        fingerprint(record, waves[record.id]))
                       for record, _, states in results if record.id not in done]
                background.put(new)
                written.update(item[0] for item in new)
                seconds = sum(seconds for record, seconds, _ in results if record.id not in done)
                extracted, audio_seconds = extracted + len(new), audio_seconds + seconds
                progress.advance(len(new) + len(read_failures) + len(model_failures), seconds)
                for error in read_failures + model_failures:
                    failed(error)
    finally:
        stop.set()
        background.close()  # everything finished so far is stored, even when stopping on an error
    # every rank reports what it stored; gathering waits until every rank is done
    reports = group.gather((skipped, extracted, audio_seconds, written))
    skipped = {utt: reason for report in reports for utt, reason in report[0].items()}
    extracted, audio_seconds = sum(report[1] for report in reports), sum(report[2] for report in reports)
    finished = done.union(*(report[3] for report in reports))
    skipped = {utt: reason for utt, reason in skipped.items() if utt not in finished}
    skipped_csv = group.from_leader(lambda: write_skipped_csv(skipped_csv_path, records, skipped))
    order = [record.id for record in records if record.id in finished]
    if not order:
        first = next(iter(skipped.items()), ("", "nothing to extract"))
        raise CacheError(f"no utterance could be extracted (e.g. {first[0]}: {first[1]})", f"see {skipped_csv}")
    if group.is_leader:
        writer.finish(order, skipped, {"num_utterances": len(order), "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
                      functional_names=backbone.functional_names)
    group.barrier()  # the other ranks return once the merged cache exists
    return ExtractionSummary(
        out, extracted, len(order) - extracted, skipped, audio_seconds, time.perf_counter() - started,
        out.stat().st_size, skipped_csv, repaired=repaired,
    )
