"""`ser extract --text --model M`: the manifest's transcripts → cache/<corpus>/text/<M>.h5."""

from __future__ import annotations

from pathlib import Path

from ser.data.manifest import manifest_sha256, read_manifest, utterance_records
from ser.data.workspace import Workspace, model_slug
from ser.errors import ManifestError
from ser.features.text_backbones import load_text_backbone
from ser.features.text_extract import TextExtractionResult, extract_text


def text_cache_path(workspace: Workspace, corpus: str, text_model: str) -> Path:
    """Where the text cache of `text_model` lives: cache/<corpus>/text/<M>.h5 (apart from the audio
    caches, so that the only audio cache stays the default one)."""
    return workspace.cache_dir / corpus / "text" / f"{model_slug(text_model)}.h5"


def run_text_extraction(
    workdir: Path,
    model: str,
    manifest: Path | None = None,
    out: Path | None = None,
    random_init: bool = False,
    allow_download: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
    overwrite: bool = False,
) -> TextExtractionResult:
    """Encode every transcript of the manifest with a text model (offline unless allowed)."""
    workspace = Workspace(Path(workdir))
    manifest_path = workspace.find_manifest(manifest)
    df = read_manifest(manifest_path)
    if "text" not in df.columns or df["text"].isna().all():
        raise ManifestError(f"{manifest_path} has no `text` column", "text features need transcripts in the manifest")
    out = Path(out) if out is not None else text_cache_path(workspace, workspace.corpus_of(manifest_path), model)
    backbone = load_text_backbone(model, random_init=random_init, allow_download=allow_download, device=device)
    return extract_text(utterance_records(df, manifest_path), backbone, out, manifest_sha256(df), batch_size, overwrite)
