"""The head registry: every name is a preset (a head class plus its paper defaults), timm-style."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence

from torch import nn

from ser.errors import UserInputError
from ser.heads.cnn import CNNHead
from ser.heads.ctarnn import CTARNNHead
from ser.heads.linear import LinearHead
from ser.heads.lstm import LSTMHead
from ser.heads.multimodal import MultimodalHead
from ser.heads.timnet import TIMNetHead
from ser.heads.transformer import TransformerHead
from ser.registry import Registry

HEADS: Registry = Registry("head", "ser list heads")


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


class Preset:
    """Builds `head_class` with `defaults` overridden by the caller's options; records
    `constructor_kwargs` (name, sizes and every option) on the head it builds."""

    def __init__(self, name: str, head_class: type[nn.Module], **defaults):
        self.name, self.head_class, self.defaults = name, head_class, defaults

    def options(self) -> list[str]:
        """The option names this head accepts (its keyword-only constructor arguments)."""
        parameters = inspect.signature(self.head_class).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def check(self, kw: dict) -> None:
        """Refuse options this head does not take and values its constructor cannot use (a word
        for a size, a list for a flag), before anything is built or trained."""
        unknown = sorted(set(kw) - set(self.options()))
        if unknown:
            raise UserInputError(
                f"head {self.name!r} does not take option(s): {', '.join(unknown)}",
                f"it accepts: {', '.join(self.options())}",
            )
        annotations = typing.get_type_hints(self.head_class.__init__)
        for name, value in kw.items():
            if value is not None and not _fits(value, annotations.get(name)):
                wanted = _describe(annotations[name])
                raise UserInputError(f"head {self.name!r} option {name}={value!r} is not {wanted}", self._default_hint(name))

    def _default_hint(self, name: str) -> str:
        default = self.defaults.get(name, inspect.signature(self.head_class).parameters[name].default)
        return "leave it out for the default" if default is None else f"its default is {name}={_jsonable(default)!r}"

    def __call__(self, in_dim: int, num_layers: int, num_classes: int, **kw) -> nn.Module:
        self.check(kw)
        try:
            bound = inspect.signature(self.head_class).bind(in_dim, num_layers, num_classes, **{**self.defaults, **kw})
        except TypeError as error:  # a required option is missing
            raise UserInputError(f"head {self.name!r}: {error}", f"it accepts: {', '.join(self.options())}") from None
        bound.apply_defaults()
        _refuse_unused_shift_options(self.name, bound.arguments, kw)
        head = self.head_class(*bound.args, **bound.kwargs)
        head.constructor_kwargs = {"name": self.name, **{k: _jsonable(v) for k, v in bound.arguments.items()}}
        return head


def _fits(value, annotation) -> bool:
    """Whether a head option's value has the type of its constructor annotation (unknown kinds of
    annotation pass: the constructor then decides)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (Sequence, list, tuple) and args:
        return isinstance(value, (list, tuple)) and all(_fits(item, args[0]) for item in value)
    return True


def _describe(annotation) -> str:
    """`int | Sequence[int] | None` → "a whole number or a list of whole numbers"."""
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a word"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args if arg is not type(None))
    if origin in (Sequence, list, tuple) and args:
        return "a list of " + _describe(args[0]).removeprefix("a ") + "s"
    return words.get(annotation, str(annotation))


SHIFT_DETAIL_OPTIONS = ("n_div", "bidirectional", "shift_stride", "shift_blocks")


def _refuse_unused_shift_options(name: str, resolved: dict, given: dict) -> None:
    """Shift details given to a head that does not shift by default (and no placement asked
    for) would silently do nothing."""
    unused = [option for option in SHIFT_DETAIL_OPTIONS if option in given]
    if unused and "shift_placement" not in given and resolved.get("shift_placement") == "none":
        raise UserInputError(
            f"head {name!r} does not shift (shift placement none), so {', '.join(unused)} would have no effect",
            "use a shift head (shiftcnn, shiftlstm, shiftformer) or also set --shift-placement",
        )


def preset(name: str, head_class: type[nn.Module], help: str, **defaults) -> Preset:
    """Register `name` as `head_class` with these defaults."""
    return HEADS.register(name, help=help)(Preset(name, head_class, **defaults))


def create_head(name: str, in_dim: int, num_layers: int, num_classes: int, **kw) -> nn.Module:
    """Build a registered head; options whose value is None are ignored (the preset's default holds)."""
    options = {key: value for key, value in kw.items() if value is not None}
    return HEADS.get(name)(in_dim, num_layers, num_classes, **options)


# Shift proportions below are PER DIRECTION: 1/16 moves D/16 channels each way it shifts.
# Dropout: the ShiftSER reference configures 0.1 but never passes it to its modules, so every
# Dropout it builds has p = 0; its presets here use that effective 0 (the cnn and lstm heads have
# none to set). `--head-option dropout=0.1` gives the configured value to transformer/shiftformer.
linear = preset("linear", LinearHead, "SUPERB probe: Linear(D, 256) → mean over time → Linear (no SpecAugment)")
cnn = preset("cnn", CNNHead, "2 ConvNeXt 1-D blocks → LayerNorm → mean → Linear; no shift (ShiftSER baseline)")
shiftcnn = preset(
    "shiftcnn", CNNHead,
    "ShiftCNN (ShiftSER): cnn with a residual shift in block 2, 1/16 of channels per direction, unidirectional",
    shift_placement="residual", shift_blocks=(1,), n_div=16, bidirectional=False,
)
lstm = preset("lstm", LSTMHead, "BiLSTM (hidden D per direction, over true lengths) → LayerNorm → mean → Linear; no shift")
shiftlstm = preset(
    "shiftlstm", LSTMHead,
    "ShiftLSTM (ShiftSER): lstm on shifted input (in-place), 1/4 of channels per direction, unidirectional",
    shift_placement="inplace", n_div=4, bidirectional=False,
)
transformer = preset(
    "transformer", TransformerHead,
    "ShiftSER's Transformer: 2 post-norm blocks, 12 heads, BERT relative_key_query positions, MLP ×4 → mean → Linear",
    attention="relative-key-query", dropout=0.0,
)
shiftformer = preset(
    "shiftformer", TransformerHead,
    "Shiftformer (ShiftSER): shift replaces attention in both blocks, 1/4 of channels per direction, bidirectional",
    shift_placement="replacement", n_div=4, bidirectional=True, dropout=0.0,
)
timnet = preset(
    "timnet", TIMNetHead,
    "TIM-Net: 1×1 conv to 39 ch, 8 bidirectional temporal-aware blocks (10 on IEMOCAP), dynamic fusion → Linear",
)
ctarnn = preset(
    "ctarnn", CTARNNHead,
    "CTA-RNN (reconstruction from the abstract): channel+temporal attention over layers → BiLSTM → attentive pool",
)
multimodal = preset(
    "multimodal", MultimodalHead,
    "Multimodal teacher: pooled audio + pooled text (transcript) branches → fusion MLP; needs text_dim, text_layers",
)
