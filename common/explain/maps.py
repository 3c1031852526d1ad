"""Relevance maps of a model's AMI score over the 12-lead ECG: Score-CAM, the model's attention, Integrated Gradients.

Every method maps records ``x`` (B, 12, T) with their demographics to a non-negative relevance (B, 12, T)
of the score that evaluation and ``fedami predict`` compute (:func:`common.training.engine.score_records`:
whole records, or the mean or max over sliding windows), deterministic and batched.

* **Score-CAM** (Wang et al. 2020): the activation maps of a convolutional layer, each upsampled to the
  record's length and scaled to [0, 1], mask the input; a mask's weight is the softmax, over all masks, of
  how much it raises the score above the all-zero record's. With ``per_lead`` (the default) every
  (activation map, lead) pair is a mask that keeps that lead's signal under the map and zeroes the rest, so
  the relevance resolves leads as well as time (12 x channels masked inputs per record); otherwise each map
  masks all 12 leads at once and the relevance is the same on every lead. Gains are in logit units:
  probability gains are bounded by 1, which makes the softmax nearly uniform.
* **Score-CAM with deletion masks** (``scorecam_delete``): the same maps and weighting, but a mask *removes*
  the signal under the map from the whole record (the lead's, with ``per_lead``) and its gain is the score's
  fall. Every masked input keeps the rest of the record, so a model that reads a segment only beside the
  others (the 12 leads' QRS timing, say) is weighed where it reads it; keep-masks leave such a segment alone
  on a flat record, where it may raise the score by nothing (``fedami explain``'s window occlusion measures
  both cases on a run's own model).
* **attention**: the weights of conv_bilstm_attn's attention pooling over its time steps, upsampled to the
  record's length (the same on every lead; the network has no lead axis there).
* **integrated_gradients** (captum): the gradient of the score's logit integrated along the straight path
  from the all-zero record, times the input; its magnitude is the relevance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Final, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.config import TrainConfig
from common.data.leads import N_LEADS
from common.training.engine import score_records

Explainer = Callable[..., np.ndarray]
_EPS: Final[float] = 1e-6
DEFAULT_BATCH: Final[int] = 512
IG_STEPS: Final[int] = 32


class ExplainError(ValueError):
    """A model or a layer that a method cannot explain, or an unknown method: said with what would work."""


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the modules holding a 1-D convolution: the layers Score-CAM can be pointed at."""
    return [n for n, m in model.named_modules() if n and any(isinstance(c, nn.Conv1d) for c in m.modules())]


def target_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The module named ``name`` (default: the model's ``cam_layer``, its last convolutional stage)."""
    name = name or getattr(model, "cam_layer", None)
    known = conv_layers(model)
    if name is None:
        raise ExplainError(f"{type(model).__name__} names no convolutional layer for Score-CAM; name one of {known}")
    modules = dict(model.named_modules())
    if name not in modules or name not in known:
        raise ExplainError(f"{type(model).__name__} has no convolutional layer {name!r}; its layers: {known}")
    return name, modules[name]


def activations(model: nn.Module, layer: nn.Module, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
    """The output (B, C, L) of ``layer`` on a forward pass over whole records."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(x, demo)
    finally:
        hook.remove()
    if not seen or seen[0].dim() != 3:
        shape = tuple(seen[0].shape) if seen else "nothing"
        raise ExplainError(f"the layer gave {shape}, not (batch, channels, time) maps")
    return seen[0]


def upsampled_maps(acts: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Activation maps (B, C, L) -> (B, C, T), linearly upsampled and min-max scaled to [0, 1] per map;
    a constant map becomes zero (it masks everything out, so it carries no place)."""
    maps = F.interpolate(acts, size=n_samples, mode="linear", align_corners=False)
    lo, hi = maps.amin(-1, keepdim=True), maps.amax(-1, keepdim=True)
    span = hi - lo
    return torch.where(span > _EPS, (maps - lo) / span.clamp_min(_EPS), torch.zeros_like(maps))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def score_cam(
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    layer: str | None = None,
    per_lead: bool = True,
    masks: Literal["keep", "delete"] = "keep",
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Score-CAM relevance (B, 12, T) of the AMI score (module docstring): ``masks="keep"`` keeps the signal under
    a map on a zeroed record (gain over the all-zero record), ``"delete"`` removes it from the record (the fall)."""
    model.eval()
    _, module = target_layer(model, layer)
    xt, dt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(demo, dtype=torch.float32)
    b, n_leads, n_t = xt.shape
    maps = upsampled_maps(activations(model, module, xt, dt), n_t)  # (B, C, T)
    n_maps = maps.shape[1]
    keep = masks == "keep"
    with torch.no_grad():
        # the reference each masked input's score is compared with: the all-zero record, or the record itself
        ref = _logit(score_records(model, torch.zeros_like(xt) if keep else xt, dt, cfg))  # (B,)
        # mask k of record i: map c = k // L on lead l = k % L (per lead), or map k on every lead
        per = n_maps * (n_leads if per_lead else 1)
        rec = torch.arange(b).repeat_interleave(per)
        k = torch.arange(per).repeat(b)
        ch, ld = (k // n_leads, k % n_leads) if per_lead else (k, None)
        gains = torch.empty(b * per)
        for sl in _chunks(b * per, batch_size):
            r, m = rec[sl], maps[rec[sl], ch[sl]]  # (n, T)
            m = m if keep else 1 - m
            if ld is None:
                masked = xt[r] * m[:, None, :]
            else:
                masked = torch.zeros(len(r), n_leads, n_t) if keep else xt[r].clone()
                rows = torch.arange(len(r))
                masked[rows, ld[sl]] = xt[r, ld[sl]] * m
            logit = _logit(score_records(model, masked, dt[r], cfg))
            gains[sl] = logit - ref[r] if keep else ref[r] - logit
        weights = torch.softmax(gains.view(b, per), dim=1)
        if per_lead:
            # relevance[i, l, t] = sum_c w[i, c, l] * maps[i, c, t]
            rel = torch.einsum("bcl,bct->blt", weights.view(b, n_maps, n_leads), maps)
        else:
            rel = torch.einsum("bc,bct->bt", weights, maps)[:, None, :].expand(b, n_leads, n_t)
    return np.ascontiguousarray(rel.clamp_min(0).numpy(), dtype=np.float32)


def attention(
    model: nn.Module, x: np.ndarray, demo: np.ndarray, cfg: TrainConfig | None = None, **_: object
) -> np.ndarray:
    """The attention pooling's weights over time (B, 12, T), upsampled; the same on every lead.

    Computed on the whole record (with sliding-window scoring, the windows' own weights are not combined).
    """
    if not hasattr(model, "encode_sequence"):
        raise ExplainError(f"{type(model).__name__} has no attention pooling; use scorecam or integrated_gradients")
    model.eval()
    xt, dt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(demo, dtype=torch.float32)
    with torch.no_grad():
        _, weights = model(xt, dt, return_attention=True)  # (B, L)
    rel = F.interpolate(weights[:, None, :], size=xt.shape[-1], mode="linear", align_corners=False)
    return np.ascontiguousarray(rel.expand(-1, N_LEADS, -1).numpy(), dtype=np.float32)


def integrated_gradients(
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    steps: int = IG_STEPS,
    batch_size: int = DEFAULT_BATCH,
    **_: object,
) -> np.ndarray:
    """|Integrated Gradients| (B, 12, T) of the score's logit from the all-zero record (captum)."""
    from captum.attr import IntegratedGradients

    model.eval()
    xt, dt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(demo, dtype=torch.float32)

    def logit(xb: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
        return _logit(score_records(model, xb, db, cfg))

    ig = IntegratedGradients(logit)
    out = []
    for sl in _chunks(len(xt), max(1, batch_size // steps)):
        attr = ig.attribute(
            xt[sl], baselines=torch.zeros_like(xt[sl]), additional_forward_args=(dt[sl],), n_steps=steps,
            internal_batch_size=batch_size,
        )  # fmt: skip
        out.append(attr.detach().abs())
    return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)


METHODS: Final[dict[str, Explainer]] = {
    "scorecam": score_cam,
    "scorecam_delete": partial(score_cam, masks="delete"),
    "attention": attention,
    "integrated_gradients": integrated_gradients,
}
METHOD_TITLES: Final[dict[str, str]] = {
    "scorecam": "Score-CAM",
    "scorecam_delete": "Score-CAM, deletion masks",
    "attention": "attention",
    "integrated_gradients": "Integrated Gradients",
}


def explainer(name: str) -> Explainer:
    """A method by its exact name; an unknown name lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ExplainError(f"unknown explanation method {name!r}; known: {', '.join(METHODS)}") from None


def relevance(
    method: str,
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    cfg: TrainConfig | None = None,
    *,
    layer: str | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """``method``'s relevance (B, 12, T) of the records ``x`` (B, 12, T) with demographics (B, 5)."""
    fn = explainer(method)
    if x.ndim != 3 or x.shape[1] != N_LEADS or len(x) != len(demo):
        raise ExplainError(f"records must be (batch, {N_LEADS}, samples) with one demographic row each; got {x.shape}")
    return fn(model, x, demo, cfg, layer=layer, batch_size=batch_size)
