"""The fine-tuned model: a transformers speech encoder (CNN frozen, transformer trained) under a
`ser` head whose weighted layer sum reads every hidden state of the transformer.

Its forward takes either raw waves (B, n) or the frozen CNN encoder's cached output (B, T, C):
the CNN always runs without gradients, and the trained part starts at the feature projection.
The hidden states are the transformer layers' outputs, recorded with hooks so that a layer
skipped by LayerDrop repeats its input (transformers ≥ 5 records nothing for a skipped layer).
The first entry is the encoder's dropout output, the input of layer 0 whether or not LayerDrop
runs that layer (a pre-hook on layer 0 never fires when the layer is skipped), and the last entry
is the encoder's output (after the final LayerNorm of pre-LN models), as in
extraction: in eval mode the states equal `SpeechBackbone.forward`'s.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ser.features.backbones import load_backbone
from ser.features.hf_backbones import SPEECH_MODEL_TYPES, SpeechBackbone, conv_output_frames, padding_is_safe
from ser.errors import UserInputError
from ser.heads import create_head


class FinetuneModel(nn.Module):
    """(waves (B, n) or conv features (B, T, C), lengths (B,)) → head outputs (B, C_out)."""

    def __init__(self, encoder_model: nn.Module, head: nn.Module, *, normalize_input: bool, freeze_layers: int = 0):
        super().__init__()
        self.backbone = encoder_model
        self.head = head
        self.normalize_input = normalize_input
        config = encoder_model.config
        self.kernels, self.strides = tuple(config.conv_kernel), tuple(config.conv_stride)
        self.padding_is_safe = padding_is_safe(config)
        self._freeze(freeze_layers)
        self._states: list[torch.Tensor | None] = []
        layers = encoder_model.encoder.layers
        encoder_model.encoder.dropout.register_forward_hook(self._record_input)  # → layer 0's input
        for index, layer in enumerate(layers):
            layer.register_forward_hook(self._recorder(index + 1))

    def _freeze(self, freeze_layers: int) -> None:
        """The CNN always; with N ≥ 1 also the input side (feature projection, positional conv) and
        the bottom N transformer layers. `masked_spec_embed` (pre-training masking) is never used."""
        layers = self.backbone.encoder.layers
        if freeze_layers > len(layers):
            raise UserInputError(f"--freeze-layers {freeze_layers} exceeds the model's {len(layers)} layers")
        frozen = [self.backbone.feature_extractor]
        if freeze_layers:
            frozen += [self.backbone.feature_projection, self.backbone.encoder.pos_conv_embed, *layers[:freeze_layers]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad = False
        if getattr(self.backbone, "masked_spec_embed", None) is not None:
            self.backbone.masked_spec_embed.requires_grad = False
        self.backbone.feature_extractor._requires_grad = False

    def _record_input(self, module, args, output):
        if self._states:  # not while gradient checkpointing recomputes a layer in backward
            self._states[0] = output

    def _recorder(self, position: int):
        def hook(module, args, output):
            if self._states:
                self._states[position] = output[0] if isinstance(output, tuple) else output
        return hook

    def num_frames(self, num_samples: int) -> int:
        return conv_output_frames(num_samples, self.kernels, self.strides)

    def prepare_wave(self, wave: np.ndarray) -> np.ndarray:
        """A wave as the model takes it: zero-mean unit-variance for layer-norm models (as extraction)."""
        return (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7) if self.normalize_input else wave

    @torch.no_grad()
    def conv_features(self, waves: torch.Tensor) -> torch.Tensor:
        """The frozen CNN encoder: prepared waves (B, n) → (B, T, C)."""
        return self.backbone.feature_extractor(waves).transpose(1, 2)  # (B, C, T) → (B, T, C)

    def hidden_states(self, conv: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every hidden state from CNN features (B, T, C) with valid frames `lengths` → (B, L+1, T, D)."""
        T = conv.shape[1]
        mask = None
        if bool((lengths < T).any()):
            mask = torch.arange(T, device=conv.device)[None, :] < lengths[:, None]  # (B, T)
        projected = self.backbone.feature_projection(conv)
        projected = projected[0] if isinstance(projected, tuple) else projected  # (B, T, D)
        num_layers = len(self.backbone.encoder.layers)
        self._states = [None] * (num_layers + 1)
        output = self.backbone.encoder(projected, attention_mask=mask).last_hidden_state  # (B, T, D)
        states = self._states
        for position in range(1, num_layers + 1):  # LayerDrop: a skipped layer passes its input on
            if states[position] is None:
                states[position] = states[position - 1]
        states[-1] = output
        self._states = []
        return torch.stack(states, dim=1)  # (B, L+1, T, D)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, conv_input: bool = False) -> torch.Tensor:
        """`inputs`: prepared waves (B, n) with sample `lengths`, or conv features (B, T, C) with frame `lengths`
        (`conv_input=True`). Waves of different lengths are zero-padded: only for layer-norm models."""
        if conv_input:
            conv, frames = inputs, lengths
        else:
            conv = self.conv_features(inputs)  # (B, T, C)
            frames = torch.tensor([self.num_frames(int(n)) for n in lengths], device=inputs.device)
            conv = conv[:, : int(frames.max())]
        return self.head(self.hidden_states(conv, frames), frames)

    def parameter_groups(self, head_lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
        """Optimiser groups: backbone / head × decayed (≥ 2-d weights) / plain; each keeps its peak rate."""
        groups = []
        for part, peak in ((self.backbone, backbone_lr), (self.head, head_lr)):
            trainable = [p for p in part.parameters() if p.requires_grad]
            for params, decay in (([p for p in trainable if p.dim() >= 2], weight_decay),
                                  ([p for p in trainable if p.dim() < 2], 0.0)):
                if params:
                    groups.append({"params": params, "weight_decay": decay, "lr": peak, "peak_lr": peak})
        return groups


def load_speech_backbone(model: str, random_init: bool, allow_download: bool, device: str,
                         layerdrop: float | None) -> SpeechBackbone:
    """The backbone through the extraction loader (same aliases, offline rules, random init)."""
    overrides = {} if layerdrop is None else {"layerdrop": layerdrop}
    backbone = load_backbone(model, random_init=random_init, allow_download=allow_download, device=device,
                             config_overrides=overrides, precision="fp32")
    if not isinstance(backbone, SpeechBackbone):
        raise UserInputError(f"{model} cannot be fine-tuned", f"ser fine-tunes {', '.join(SPEECH_MODEL_TYPES)} models")
    return backbone


def build_finetune_model(config, pristine: SpeechBackbone, num_outputs: int) -> FinetuneModel:
    """A copy of the loaded backbone (its weights untouched for the next fold) under a fresh head
    seeded by `config.seed`."""
    from ser.training.config import head_constructor_options
    from ser.training.loop import seed_everything

    encoder_model = copy.deepcopy(pristine.model)
    seed_everything(config.seed)
    hf_config = encoder_model.config
    head = create_head(config.head, hf_config.hidden_size, hf_config.num_hidden_layers + 1, num_outputs,
                       **head_constructor_options(config.head_kwargs))
    model = FinetuneModel(encoder_model, head, normalize_input=pristine.normalize_input,
                          freeze_layers=config.freeze_layers).to(pristine.device)
    if config.gradient_checkpointing:
        enable = getattr(model.backbone, "activation_checkpointing_enable", None)  # transformers ≥ 5.2x
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model
