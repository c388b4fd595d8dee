"""Text encoders for transcripts (BERT, RoBERTa or any local/hub encoder directory).

Same contract as the speech backbones, so the cache writer stores them unchanged: attributes
name, source, revision, random_init, num_layers (all L+1 hidden states), dim, sample_rate (0:
not audio), frame_rate (0: tokens, not time), batching ("text"), modality ("text"), and
`forward(texts) -> list[np.ndarray (L, T, D)]` with T = the utterance's token count (special
tokens included, padding removed).

Loading is offline by default (`local_files_only=True`); `allow_download=True` permits the hub.
`save_tiny_text_model` writes a small random BERT/RoBERTa with a word-level tokenizer trained on
given texts: the stub encoder for tests, the demo and the synthetic ablation (no downloads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import ModelLoadError, UserInputError
from ser.features.backbone import quiet_transformers, resolve_device
from ser.registry import Registry


@dataclass(frozen=True)
class TextModelSpec:
    """A text encoder alias: its hub id and architecture family."""

    hub_id: str
    family: str  # "bert" | "roberta"


TEXT_BACKBONES: Registry[TextModelSpec] = Registry("text model")
TEXT_BACKBONES.register("bert-base", help="BERT base uncased (google-bert/bert-base-uncased), 13 × 768")(
    TextModelSpec("google-bert/bert-base-uncased", "bert")
)
TEXT_BACKBONES.register("roberta-base", help="RoBERTa base (FacebookAI/roberta-base), 13 × 768")(
    TextModelSpec("FacebookAI/roberta-base", "roberta")
)


class TextBackbone:
    """A frozen transformer text encoder returning every hidden state per transcript."""

    sample_rate = 0  # not an audio model
    frame_rate = 0.0  # tokens, not time frames
    batching = "text"
    modality = "text"

    def __init__(self, name: str, source: str, model, tokenizer, revision: str, random_init: bool, device: str):
        import torch

        self.name, self.source, self.revision, self.random_init = name, source, revision, random_init
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()  # eval: no dropout
        self.tokenizer = tokenizer
        self.num_layers = int(model.config.num_hidden_layers) + 1
        self.dim = int(model.config.hidden_size)
        self.max_tokens = int(getattr(model.config, "max_position_embeddings", 512)) - 2

    def forward(self, texts: list[str]) -> list[np.ndarray]:
        """Hidden states of every layer for each text → [(L, T_i, D) float32]."""
        import torch

        encoded = self.tokenizer(
            [text or "" for text in texts], padding=True, truncation=True,
            max_length=self.max_tokens, return_tensors="pt",
        )
        encoded = {key: value.to(self.device) for key, value in encoded.items()}
        with torch.inference_mode():
            out = self.model(**encoded, output_hidden_states=True)
        states = torch.stack(out.hidden_states, dim=1).float().cpu().numpy()  # (B, L, T, D)
        lengths = encoded["attention_mask"].sum(dim=1).tolist()  # (B,)
        return [states[i, :, : int(n)] for i, n in enumerate(lengths)]  # right padding → first n tokens


def _resolve(name_or_path: str) -> tuple[str, str]:
    """(alias or directory name, where to load from): an alias's hub id, a directory, or a hub id."""
    if name_or_path in TEXT_BACKBONES:
        return name_or_path, TEXT_BACKBONES.get(name_or_path).hub_id
    if Path(name_or_path).is_dir():
        if not (Path(name_or_path) / "config.json").is_file():
            raise ModelLoadError(f"{name_or_path} has no config.json", "pass a directory saved with save_pretrained")
        return name_or_path, str(Path(name_or_path).resolve())
    if "/" not in name_or_path:
        TEXT_BACKBONES.get(name_or_path)  # neither alias nor hub id: raises the did-you-mean error
    return name_or_path, name_or_path


def load_text_backbone(
    name_or_path: str, *, random_init: bool = False, allow_download: bool = False, device: str = "cpu"
) -> TextBackbone:
    """Load a text encoder (alias, hub id or local directory) with its tokenizer; offline by default."""
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    quiet_transformers()
    name, source = _resolve(name_or_path)
    local_only = not allow_download
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        if random_init:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
            model = AutoModel.from_config(config)
        else:
            model = AutoModel.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"cannot load text model {name_or_path!r} from {source}: {str(error).splitlines()[0]}",
            f"on a connected machine run `hf download {source} --local-dir DIR`, then pass --text-model DIR "
            "(or add --allow-download)",
        ) from error
    revision = str(getattr(model.config, "_commit_hash", None) or "local")
    backbone = TextBackbone(name, source, model, tokenizer, revision, random_init, resolve_device(device))
    backbone.transformers_version = transformers.__version__
    return backbone


def save_tiny_text_model(
    out_dir: Path, texts: list[str], family: str = "bert", hidden_size: int = 32, num_layers: int = 2, seed: int = 0
) -> Path:
    """Write a small random BERT/RoBERTa and a word-level tokenizer over `texts` to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    if family not in ("bert", "roberta"):
        raise UserInputError(f"unknown text model family {family!r}", "choose bert or roberta")
    pad, unk, cls, sep, mask = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    tokenizer = Tokenizer(models.WordLevel(unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        [text.lower() for text in texts], trainers.WordLevelTrainer(special_tokens=[pad, unk, cls, sep, mask])
    )
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask
    )
    shape = dict(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=128,
        pad_token_id=tokenizer.token_to_id(pad),
    )
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**shape)) if family == "bert" else RobertaModel(RobertaConfig(type_vocab_size=1, **shape))
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir
