"""Model registry and zoo. Every model maps ``(x (B, 12, T), demographics (B, 5))`` to one AMI logit.

``x`` is float32 in mV (T = 1000 at 100 Hz by default; any T >= 250 works) and ``demo`` is the float32
vector of :data:`common.preprocess.DEMOGRAPHIC_FEATURES`. Every factory accepts ``use_demographics``:
when True the pooled ECG features are concatenated with ``demo`` before the head (late fusion), when
False ``demo`` is ignored. ``python -m common.models`` lists the registered models and their sizes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, overload

import torch
from torch import nn

from common.leads import N_LEADS
from common.preprocess import DEMOGRAPHIC_FEATURES

N_DEMO: Final[int] = len(DEMOGRAPHIC_FEATURES)

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under its exact public name."""

    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_models() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Instantiate a registered model by exact name; an unknown name lists the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- shared building blocks -----------------------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Conv1d (no bias: BN follows) + BatchNorm (+ ReLU), padded so that the output length is ceil(T / stride).

    Even kernels (Wang's 8) are padded asymmetrically, one more sample on the right, like Keras' "same";
    PyTorch's ``padding="same"`` would do the same but warns and rejects strides.
    """
    left, right = (k - 1) // 2, k // 2
    layers: list[nn.Module] = [] if left == right else [nn.ConstantPad1d((left, right), 0.0)]
    layers += [nn.Conv1d(c_in, c_out, k, stride=stride, padding=left if left == right else 0, bias=False)]
    layers += [nn.BatchNorm1d(c_out)] + ([nn.ReLU(inplace=True)] if act else [])
    return nn.Sequential(*layers)


class _FusionHead(nn.Module):
    """Late fusion: pooled ECG features (+ demographics) -> small MLP -> one logit.

    Parameters
    ----------
    n_features
        Width of the pooled ECG feature vector.
    use_demographics
        Concatenate the ``(B, N_DEMO)`` demographic vector before the MLP; when False it is ignored.
    hidden, dropout
        The MLP's hidden width and the dropout before its output layer.
    """

    def __init__(self, n_features: int, use_demographics: bool, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.use_demographics = use_demographics
        n_in = n_features + (N_DEMO if use_demographics else 0)
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, z: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        if self.use_demographics:
            z = torch.cat([z, demo], dim=1)
        out: torch.Tensor = self.mlp(z).squeeze(-1)
        return out


class _EcgClassifier(nn.Module):
    """Base of the zoo: a subclass builds ``self.head`` and implements ``encode`` (B, 12, T) -> (B, F)."""

    head: _FusionHead

    @property
    def use_demographics(self) -> bool:
        return self.head.use_demographics

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encode(x), demo)
        return out


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """ResNet-D identity path: average-pool to down-sample (a strided 1x1 conv would drop 3 of 4 samples),
    then a 1x1 conv + BN only where the width changes; empty (identity) otherwise."""
    layers: list[nn.Module] = [nn.AvgPool1d(stride, ceil_mode=True)] if stride > 1 else []
    if c_in != c_out:
        layers += [nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)]
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    """``relu(branch(x) + shortcut(x))``; ``branch`` must map c_in -> c_out at ``stride``."""

    def __init__(self, branch: nn.Module, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.branch(x) + self.shortcut(x))
        return out


def _basic_block(c_in: int, c_out: int, k: int, stride: int) -> _Residual:
    branch = nn.Sequential(_conv_bn(c_in, c_out, k, stride), _conv_bn(c_out, c_out, k, act=False))
    return _Residual(branch, c_in, c_out, stride)


def _concat_pool(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h.mean(-1), h.amax(-1)], dim=1)


# --- the plain CNN baseline -----------------------------------------------------------------------


class CNN1d(_EcgClassifier):
    """Plain 1-D CNN: four strided conv blocks, average+max pooling, late demographic fusion."""

    def __init__(self, width: int = 32, use_demographics: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(N_LEADS, width, 7, 2),
            _conv_bn(width, 2 * width, 5, 2),
            _conv_bn(2 * width, 2 * width, 5, 2),
            _conv_bn(2 * width, 4 * width, 3, 2),
        )
        self.head = _FusionHead(8 * width, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return _concat_pool(self.features(x))


@register_model("cnn1d")
def cnn1d(**kwargs: object) -> nn.Module:
    return CNN1d(**kwargs)  # type: ignore[arg-type]


# --- Conv-BiLSTM-Attn (the clinical study's model) ------------------------------------------------


class _AdditiveAttention(nn.Module):
    """Bahdanau attention pooling: ``a = softmax_t(v . tanh(W h_t + b))``, ``context = sum_t a_t h_t``."""

    def __init__(self, n_in: int, n_attn: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_in, n_attn)
        self.score = nn.Linear(n_attn, 1, bias=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, L, n_in) -> context (B, n_in) and weights (B, L) that sum to 1 over L."""
        weights = torch.softmax(self.score(torch.tanh(self.proj(h))).squeeze(-1), dim=1)
        return torch.einsum("bl,bld->bd", weights, h), weights


class ConvBiLSTMAttn(_EcgClassifier):
    """Conv-BiLSTM-Attn: residual CNN front end, bidirectional LSTM, additive attention, late fusion.

    The study's paper names the architecture but gives no sizes; these are ours (defaults, ~0.26 M
    parameters):

    ========================  ==========================================  ===============  ============
    stage                     layers                                      channels         total stride
    ========================  ==========================================  ===============  ============
    stem                      conv k=7 stride 2 + BN + ReLU               12 -> 32         2
    residual block 1          2x (conv k=5 + BN), ResNet-D shortcut       32 -> 64         4
    residual block 2          2x (conv k=5 + BN), ResNet-D shortcut       64 -> 64         8
    residual block 3          2x (conv k=5 + BN), 1x1 shortcut            64 -> 96         8
    BiLSTM                    1 layer, 64 hidden units per direction      96 -> 128        8
    attention                 additive, 64-dim scoring space              128 -> 128
    head                      [context, demographics] -> 64 -> 1 logit    128 (+5) -> 1
    ========================  ==========================================  ===============  ============

    A 10 s ECG at 100 Hz (T = 1000) becomes a sequence of 125 steps of 80 ms each, fine enough for the
    attention to pick out single beats and ST segments, short enough for an LSTM on a CPU.

    ``forward(x, demo, return_attention=True)`` also returns the attention weights (B, L), L = ceil(T / 8).
    """

    def __init__(
        self,
        use_demographics: bool = True,
        width: int = 32,
        lstm_hidden: int = 64,
        attn_dim: int = 64,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.frontend = nn.Sequential(
            _conv_bn(N_LEADS, width, 7, 2),
            _basic_block(width, 2 * width, 5, 2),
            _basic_block(2 * width, 2 * width, 5, 2),
            _basic_block(2 * width, 3 * width, 5, 1),
        )
        self.lstm = nn.LSTM(3 * width, lstm_hidden, batch_first=True, bidirectional=True)
        self.attention = _AdditiveAttention(2 * lstm_hidden, attn_dim)
        self.head = _FusionHead(2 * lstm_hidden, use_demographics, dropout=dropout)

    def encode_sequence(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, 12, T) -> attention-pooled context (B, 2 * lstm_hidden) and weights (B, L)."""
        seq, _ = self.lstm(self.frontend(x).transpose(1, 2))
        context, weights = self.attention(seq)
        return context, weights

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_sequence(x)[0]

    @overload
    def forward(self, x: torch.Tensor, demo: torch.Tensor, return_attention: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def forward(
        self, x: torch.Tensor, demo: torch.Tensor, return_attention: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self, x: torch.Tensor, demo: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        context, weights = self.encode_sequence(x)
        logits: torch.Tensor = self.head(context, demo)
        return (logits, weights) if return_attention else logits


@register_model("conv_bilstm_attn")
def conv_bilstm_attn(**kwargs: Any) -> nn.Module:
    return ConvBiLSTMAttn(**kwargs)


@register_model("conv_bilstm_attn_nodemo")
def conv_bilstm_attn_nodemo(use_demographics: bool = False, **kwargs: Any) -> nn.Module:
    """The ablation: :class:`ConvBiLSTMAttn` without the demographic input."""
    if use_demographics:
        raise ValueError("conv_bilstm_attn_nodemo ignores demographics by definition; use conv_bilstm_attn")
    return ConvBiLSTMAttn(use_demographics=False, **kwargs)


# --- convolutional baselines ----------------------------------------------------------------------


class ResNet1d(_EcgClassifier):
    """Wang et al. 2017 ("Time series classification from scratch") 1-D ResNet.

    Three residual blocks of three convs (kernels 8, 5, 3; 64, 128, 128 channels), stride 1 throughout,
    global average pooling. The shortcut is a 1x1 conv + BN where the width changes and the identity
    otherwise (Wang's code puts a BN there too; it only rescales).
    """

    def __init__(self, use_demographics: bool = True, widths: Sequence[int] = (64, 128, 128), dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = N_LEADS
        for c in widths:
            branch = nn.Sequential(_conv_bn(c_in, c, 8), _conv_bn(c, c, 5), _conv_bn(c, c, 3, act=False))
            blocks.append(_Residual(branch, c_in, c))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = _FusionHead(c_in, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x).mean(-1)
        return out


@register_model("resnet1d")
def resnet1d(**kwargs: Any) -> nn.Module:
    return ResNet1d(**kwargs)


class XResNet1d(_EcgClassifier):
    """1-D xresnet (He et al. 2019 "Bag of tricks", ResNet-D) as in the PTB-XL benchmark (Strodthoff et al. 2021).

    Stem of three k=5 convs (12 -> 32 -> 32 -> 64, the first with stride 2) and a stride-2 max-pool; four
    stages of bottleneck blocks (1x1 -> k=5 -> 1x1, expansion 4) with stride 2 from the second stage on, so
    the total stride is 32; average-pool down-sampling in the shortcut; the last BN of every branch starts
    at zero so that every block starts as the identity; avg+max concat pooling.

    ``widths`` are the bottleneck widths of the four stages (each stage outputs 4x its width). The
    benchmark's code keeps 64 in every stage (256 channels out; its ImageNet-style doubling is commented
    out), which is the default: ~0.9 M / ~1.8 M parameters for 50 / 101 layers. Doubling per stage,
    ``(64, 128, 256, 512)`` as in fastai's 2-D xresnet50, would cost ~19 M / ~33 M.
    """

    expansion: Final[int] = 4

    def __init__(
        self,
        layers: Sequence[int],
        use_demographics: bool = True,
        widths: Sequence[int] = (64, 64, 64, 64),
        kernel_size: int = 5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if len(widths) != len(layers):
            raise ValueError(f"one width per stage: {len(layers)} stages, {len(widths)} widths")
        stem = [_conv_bn(N_LEADS, 32, kernel_size, 2), _conv_bn(32, 32, kernel_size), _conv_bn(32, 64, kernel_size)]
        blocks: list[nn.Module] = [*stem, nn.MaxPool1d(3, stride=2, padding=1)]
        c_in = 64
        for i, (n_blocks, hidden) in enumerate(zip(layers, widths, strict=True)):
            c_out = hidden * self.expansion
            for j in range(n_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                expand = _conv_bn(hidden, c_out, 1, act=False)
                nn.init.zeros_(next(m for m in expand if isinstance(m, nn.BatchNorm1d)).weight)
                branch = nn.Sequential(_conv_bn(c_in, hidden, 1), _conv_bn(hidden, hidden, kernel_size, stride), expand)
                blocks.append(_Residual(branch, c_in, c_out, stride))
                c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = _FusionHead(2 * c_in, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return _concat_pool(self.features(x))


@register_model("xresnet1d50")
def xresnet1d50(**kwargs: Any) -> nn.Module:
    return XResNet1d((3, 4, 6, 3), **kwargs)


@register_model("xresnet1d101")
def xresnet1d101(**kwargs: Any) -> nn.Module:
    return XResNet1d((3, 4, 23, 3), **kwargs)


class _InceptionModule(nn.Module):
    """Bottleneck 1x1 conv, three parallel long convs on it, a max-pool + 1x1 branch on the input; BN + ReLU."""

    def __init__(self, c_in: int, n_filters: int, bottleneck: int, kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False)
        self.convs = nn.ModuleList(
            nn.Conv1d(bottleneck, n_filters, k, padding=k // 2, bias=False) for k in kernel_sizes
        )
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, n_filters, 1, bias=False))
        self.bn_act = nn.Sequential(nn.BatchNorm1d(n_filters * (len(kernel_sizes) + 1)), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        out: torch.Tensor = self.bn_act(torch.cat([*(conv(b) for conv in self.convs), self.pool(x)], dim=1))
        return out


class Inception1d(_EcgClassifier):
    """InceptionTime-style network (Fawaz et al. 2020; the PTB-XL benchmark's ``inception1d``).

    ``depth`` inception modules with kernels 39/19/9 (odd, so "same" padding is symmetric) after a
    ``bottleneck``-channel 1x1 conv, plus a max-pool branch; each module outputs ``4 * n_filters``
    channels; a residual connection around every 3 modules; global average pooling. InceptionTime uses
    32 filters; the default 16 (64 channels) quarters the cost, which at stride 1 is otherwise the
    largest of the zoo.
    """

    def __init__(
        self,
        use_demographics: bool = True,
        n_filters: int = 16,
        bottleneck: int = 16,
        depth: int = 6,
        kernel_sizes: Sequence[int] = (39, 19, 9),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if depth % 3:
            raise ValueError(f"depth must be a multiple of 3 (one residual per 3 modules), got {depth}")
        width = n_filters * (len(kernel_sizes) + 1)
        groups: list[nn.Module] = []
        c_in = N_LEADS
        for _ in range(depth // 3):
            modules = [
                _InceptionModule(c_in if i == 0 else width, n_filters, bottleneck, kernel_sizes) for i in range(3)
            ]
            groups.append(_Residual(nn.Sequential(*modules), c_in, width))
            c_in = width
        self.features = nn.Sequential(*groups)
        self.head = _FusionHead(width, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x).mean(-1)
        return out


@register_model("inception1d")
def inception1d(**kwargs: Any) -> nn.Module:
    return Inception1d(**kwargs)


# --- recurrent baseline ---------------------------------------------------------------------------


class BiLSTM(_EcgClassifier):
    """Recurrent baseline: one strided conv (k=9, stride 5, 12 -> 64 channels, BN + ReLU), then a 2-layer
    bidirectional LSTM (64 hidden units per direction), mean+max pooled over time.

    The conv only shortens the sequence (T = 1000 -> 200 steps of 50 ms) so that the LSTM is affordable on
    a CPU and its gradients span the whole 10 s; all temporal modelling is recurrent.
    """

    def __init__(
        self,
        use_demographics: bool = True,
        proj_channels: int = 64,
        hidden: int = 64,
        num_layers: int = 2,
        stride: int = 5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.proj = _conv_bn(N_LEADS, proj_channels, 2 * stride - 1, stride)
        self.lstm = nn.LSTM(
            proj_channels,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,  # nn.LSTM warns about dropout after the last layer
        )
        self.head = _FusionHead(4 * hidden, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.lstm(self.proj(x).transpose(1, 2))
        return _concat_pool(seq.transpose(1, 2))


@register_model("bilstm")
def bilstm(**kwargs: Any) -> nn.Module:
    return BiLSTM(**kwargs)


# --- CLI: python -m common.models -----------------------------------------------------------------


def _uses_demographics(model: nn.Module) -> bool:
    return bool(getattr(model, "use_demographics", True))


def main(argv: Sequence[str] | None = None) -> int:
    """Print every registered model with its parameter count (12-lead input) and whether it uses demographics."""
    parser = argparse.ArgumentParser(prog="python -m common.models", description=main.__doc__)
    parser.parse_args(argv)
    rows = [(name, create_model(name)) for name in list_models()]
    w = max(len("model"), *(len(name) for name, _ in rows))
    print(f"{'model':<{w}}  {'parameters':>10}  demographics  class")
    for name, model in rows:
        demo = "yes" if _uses_demographics(model) else "no"
        print(f"{name:<{w}}  {count_parameters(model):>10d}  {demo:<12}  {type(model).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
