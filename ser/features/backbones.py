"""Backbone aliases (`ser list models`) and `load_backbone`: alias, hub id or local directory.

Loading is offline by default: `local_files_only=True` and `HF_HUB_OFFLINE=1` before transformers
is imported, so a missing model fails at once with the command that fetches it. `random_init`
builds the real architecture with random weights from the alias's own config (no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ser.errors import ModelLoadError, UserInputError
from ser.registry import Registry

RANDOM_INIT_SEED = 0  # the same random weights in every process, so resumed runs match


@dataclass(frozen=True)
class BackboneSpec:
    """Facts about an alias: where it lives and its architecture (used for --random-init)."""

    model_type: str  # transformers model_type, or "frontend"
    hub_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    build_frontend: Callable[[str], Any] | None = None


BACKBONES: Registry[BackboneSpec] = Registry("model", list_command="ser list models")

_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
_LARGE_LAYER_NORM = dict(_LARGE, feat_extract_norm="layer", do_stable_layer_norm=True)


def _speech(name: str, model_type: str, hub_id: str, help: str, **config: Any) -> None:
    BACKBONES.register(name, help=f"{help} ({hub_id})")(BackboneSpec(model_type, hub_id, config))


_speech("wavlm-base", "wavlm", "microsoft/wavlm-base", "WavLM Base, 13 × 768, group norm")
_speech("wavlm-base-plus", "wavlm", "microsoft/wavlm-base-plus", "WavLM Base+, 13 × 768, group norm")
_speech("wavlm-large", "wavlm", "microsoft/wavlm-large", "WavLM Large, 25 × 1024, layer norm", **_LARGE_LAYER_NORM, conv_bias=False)
_speech("hubert-base", "hubert", "facebook/hubert-base-ls960", "HuBERT Base, 13 × 768, group norm")
_speech("hubert-large", "hubert", "facebook/hubert-large-ll60k", "HuBERT Large, 25 × 1024, layer norm", **_LARGE_LAYER_NORM, conv_bias=True)
_speech("wav2vec2-base", "wav2vec2", "facebook/wav2vec2-base", "wav2vec 2.0 Base, 13 × 768, group norm")
_speech("wav2vec2-large", "wav2vec2", "facebook/wav2vec2-large-lv60", "wav2vec 2.0 Large (LV-60), 25 × 1024, layer norm", **_LARGE_LAYER_NORM, conv_bias=True)
_speech("data2vec-base", "data2vec-audio", "facebook/data2vec-audio-base", "data2vec-audio Base, 13 × 768, layer norm, unpadded batches")
_speech("data2vec-large", "data2vec-audio", "facebook/data2vec-audio-large", "data2vec-audio Large, 25 × 1024, layer norm, unpadded batches", **_LARGE)


def _whisper(size: str, d_model: int, layers: int, heads: int, mels: int = 80) -> None:
    config = dict(d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=4 * d_model,
                  decoder_layers=layers, decoder_attention_heads=heads, decoder_ffn_dim=4 * d_model, num_mel_bins=mels)
    help = f"Whisper {size} encoder, {layers + 1} × {d_model}, 30-s windows"
    BACKBONES.register(f"whisper-{size}", help=f"{help} (openai/whisper-{size})")(
        BackboneSpec("whisper", f"openai/whisper-{size}", config)
    )


_whisper("tiny", 384, 4, 6)
_whisper("base", 512, 6, 8)
_whisper("small", 768, 12, 12)
_whisper("medium", 1024, 24, 16)
_whisper("large-v3", 1280, 32, 20, mels=128)


def _frontend(name: str, help: str) -> None:
    def build(alias: str):
        from ser.features.frontends import FbankFrontend, MfccFrontend

        return FbankFrontend(alias) if name == "fbank" else MfccFrontend(alias)

    BACKBONES.register(name, help=help)(BackboneSpec("frontend", build_frontend=build))


_frontend("fbank", "80 log-mel filterbanks (transformers-style log-mel, not Kaldi fbank), 25 ms / 10 ms, 1 layer")
_frontend("mfcc", "39 MFCCs with TIM-Net's window/hop, 1 layer (no weights)")


def _opensmile(name: str, help: str) -> None:
    def build(alias: str):
        from ser.features.opensmile_backbone import OpenSmileBackbone

        return OpenSmileBackbone(alias)

    BACKBONES.register(name, help=help)(BackboneSpec("frontend", build_frontend=build))


_opensmile("egemaps", "openSMILE eGeMAPS v02: 25 LLDs / 10 ms, 1 layer; 88 functionals (needs ser[opensmile])")
_opensmile("compare", "openSMILE ComParE 2016: 65 LLDs / 10 ms, 1 layer; 6373 functionals (needs ser[opensmile])")


WEIGHT_FREE_PREFIX = "ser:"  # the recorded source of a weight-free frontend: ser:fbank, ser:mfcc, ser:egemaps, …


def is_weight_free(source: str) -> bool:
    """Whether a cache's recorded `source` is a weight-free frontend (fbank, mfcc, egemaps, compare),
    not a pre-trained model."""
    return str(source).startswith(WEIGHT_FREE_PREFIX)


def resolve_source(name_or_path: str) -> str:
    """What a --model value points at: an alias's hub id, a local directory (absolute), or a hub id."""
    if name_or_path in BACKBONES:
        return BACKBONES.get(name_or_path).hub_id or f"ser:{name_or_path}"
    if os.path.isdir(name_or_path):
        return str(Path(name_or_path).resolve())
    if "/" in name_or_path and not os.path.exists(name_or_path) and not name_or_path.startswith((".", "/")):
        return name_or_path
    if os.path.exists(name_or_path):
        raise UserInputError(f"--model {name_or_path} is a file, not a model folder",
                             "pass the folder that holds its config.json, or a name from `ser list models`")
    if name_or_path.startswith((".", "/", "~")):
        raise UserInputError(f"--model {name_or_path}: no such folder",
                             "pass a model folder (saved with save_pretrained or `hf download`), or a name from "
                             "`ser list models`")
    BACKBONES.get(name_or_path)  # raises with "did you mean"
    raise AssertionError("unreachable")


def _missing_model_error(source: str, name: str) -> ModelLoadError:
    folder = source.split("/")[-1]
    return ModelLoadError(
        f"model {name!r} ({source}) is not on this machine and downloads are off",
        f"on a connected machine run `hf download {source} --local-dir {folder}`, copy the folder here and "
        f"pass `--model ./{folder}`; or pass --allow-download; or --random-init for random weights",
    )


def _unloadable_weights(source: str, error: BaseException) -> ModelLoadError:
    """One line for a backbone folder whose weights transformers refuses or cannot read: a
    pytorch_model.bin holding pickled objects (code that would run on loading; transformers loads
    with weights_only and refuses it), or a truncated or damaged weights file."""
    import pickle

    if isinstance(error, pickle.UnpicklingError):
        return ModelLoadError(
            f"{source}: its pytorch_model.bin holds pickled objects besides weights (code that could run "
            "when loaded), so it was refused",
            "use a copy from a trusted source, preferably with model.safetensors (hf download …)")
    cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return ModelLoadError(f"{source}: its weights file cannot be read ({cause})",
                          "the folder is damaged or incomplete: download or save it again")


def _weights_errors() -> tuple[type[BaseException], ...]:
    """What loading a damaged or unsafe weights file raises (torch's own out-of-memory excepted)."""
    import pickle

    from safetensors import SafetensorError

    return (pickle.UnpicklingError, EOFError, SafetensorError, RuntimeError)


def _from_pretrained(load, source: str, name: str):
    """`load()` (a from_pretrained call) with its failures as one line each."""
    import torch

    try:
        return load()
    except OSError:
        raise _missing_model_error(source, name) from None
    except torch.OutOfMemoryError:
        raise
    except _weights_errors() as error:
        raise _unloadable_weights(source, error) from None


def _autocast_dtype(device: str, precision: str):
    import torch

    if precision == "fp32" or (precision == "auto" and not device.startswith("cuda")):
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def load_backbone(
    name_or_path: str,
    *,
    random_init: bool = False,
    allow_download: bool = False,
    device: str = "cpu",
    config_overrides: dict[str, Any] | None = None,
    precision: str = "auto",
):
    """Build the backbone for an alias, hub id or local directory holding a config.json.

    `precision`: auto (fp16 autocast on GPU, fp32 on CPU) | fp32 | fp16 | bf16.
    """
    from ser.features.backbone import quiet_transformers, resolve_device

    spec = BACKBONES.get(name_or_path) if name_or_path in BACKBONES else None
    if spec is not None and spec.build_frontend is not None:
        resolve_device(device)  # checked like any other: a frontend runs on the CPU whatever it says
        return spec.build_frontend(name_or_path)
    source = resolve_source(name_or_path)
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        raise ModelLoadError(f"{source} has no config.json", "point --model at a folder saved by save_pretrained / hf download")
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device(device)
    import torch
    from transformers import AutoConfig

    quiet_transformers()
    local_only = not allow_download
    if random_init and spec is not None:
        config = AutoConfig.for_model(spec.model_type, **spec.config)
    else:
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        except OSError:
            raise _missing_model_error(source, name_or_path) from None
        except ValueError as error:  # a config.json without (or with an unknown) model_type
            raise ModelLoadError(f"{source}/config.json is not a transformers model config "
                                 f"({str(error).strip().split('. ')[0]})",
                                 "point --model at a folder saved by save_pretrained / hf download") from None
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    revision = "random-init" if random_init else (getattr(config, "_commit_hash", None) or "local")
    common = dict(name=name_or_path, source=source, revision=revision, random_init=random_init, device=device,
                  autocast_dtype=_autocast_dtype(device, precision))
    torch.manual_seed(RANDOM_INIT_SEED)
    if config.model_type == "whisper":
        return _load_whisper(config, source, random_init, local_only, common)
    from ser.features.hf_backbones import SPEECH_MODEL_TYPES, SpeechBackbone

    if config.model_type not in SPEECH_MODEL_TYPES:
        raise ModelLoadError(
            f"{name_or_path} is a {config.model_type!r} model; ser extracts from {', '.join(SPEECH_MODEL_TYPES)} and whisper",
            "run `ser list models` for the aliases",
        )
    from transformers import AutoModel

    if random_init:
        model = AutoModel.from_config(config)
    else:
        model = _from_pretrained(lambda: AutoModel.from_pretrained(source, config=config, local_files_only=local_only),
                                 source, name_or_path)
    return SpeechBackbone(model, **common)


def _load_whisper(config, source: str, random_init: bool, local_only: bool, common: dict):
    from transformers import WhisperFeatureExtractor, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from ser.features.whisper_backbone import WhisperBackbone

    if random_init:
        encoder = WhisperEncoder(config)
    else:
        encoder = _from_pretrained(lambda: WhisperModel.from_pretrained(source, config=config,
                                                                        local_files_only=local_only),
                                   source, common["name"]).get_encoder()
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(source, local_files_only=local_only)
    except OSError:
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return WhisperBackbone(encoder, extractor, **common)
