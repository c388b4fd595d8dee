"""`ser extract` glue: workspace + manifest → utterance records → `features.extract`.

An existing cache (or unfinished run) of another model or of a different manifest is refused
before the model is loaded, so the mistake costs nothing. Under torchrun every rank runs this
with the same arguments and extracts its share (features/distributed.py).
"""

from __future__ import annotations

from pathlib import Path

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
from ser.data.workspace import Workspace
from ser.features.backbones import load_backbone, resolve_source
from ser.features.cache_writer import existing_cache_is_complete
from ser.features.distributed import join_extraction_group, leader_holds_output, local_device
from ser.features.extract import ExtractionSummary, cache_identity, extract, parse_layers


def extract_corpus(
    workdir: Path,
    model: str,
    *,
    manifest: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    random_init: bool = False,
    allow_download: bool = False,
    max_seconds: float | None = None,
    layers: str | None = None,
    batch_seconds: float | None = None,
    on_error: str = "skip",
    overwrite: bool = False,
    show_progress: bool = False,
    memory_budget: str | int | None = None,
) -> ExtractionSummary:
    """Extract the manifest's utterances with `model` into cache/<corpus>/<model>.h5 (or `out`)."""
    workspace = Workspace(Path(workdir))
    manifest_path = workspace.find_manifest(manifest)
    df = read_manifest(manifest_path)
    digest = manifest_sha256(df)
    out = Path(out) if out is not None else workspace.cache_path(workspace.corpus_of(manifest_path), model)
    early = cache_identity(resolve_source(model), random_init, None, max_seconds, digest)
    existing_cache_is_complete(out, early, overwrite)  # refuses a mismatching cache before loading anything
    device = local_device(device)  # cuda:<LOCAL_RANK> for each rank of a torchrun launch
    group = join_extraction_group(device)
    try:
        with leader_holds_output(group, out):  # before loading the model: a second run on `out` fails at once
            backbone = load_backbone(
                model, random_init=random_init, allow_download=allow_download, device=device, precision=precision
            )
            return extract(
                utterance_records(df, manifest_path), backbone, out,
                manifest_sha256=digest, layers=parse_layers(layers, backbone.num_layers), max_seconds=max_seconds,
                batch_seconds=batch_seconds, on_error=on_error, overwrite=overwrite,
                show_progress=show_progress and group.is_leader, memory_budget=memory_budget, group=group,
            )
    finally:
        group.close()
