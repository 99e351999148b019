"""One transformers attention function, "hccs_lab", that exposes the pre-softmax logits and lets the softmax be swapped.

Why a registered attention function rather than hooks: SDPA never materialises the logits, and
`output_attentions` only gives probabilities. The function below does what transformers' eager
attention does, step for step (so with nothing attached the outputs are bit-for-bit eager), with two
seams in the middle:

* observers `fn(layer, logits, keymask)` see the logits `q @ k^T * scaling` *before* the additive
  mask, together with a boolean key mask (True = the key takes part);
* a probability function `fn(layer, logits, keymask) -> probs` may replace the softmax (QAT puts
  HCCS in there); `None` restores the eager softmax.

transformers builds the attention mask through a per-implementation mask function. A custom
implementation without one gets `attention_mask=None`, so padding would be attended silently; the
registration therefore pairs the function with `eager_mask` (0 where a key takes part, the dtype's
most negative value where it does not). Causal masks of decoders (GPT-2, Llama) come through the same
path: the key mask of a causal row i is True for keys 0..i only (and not for padding).

Grouped-query models (Llama family, e.g. SmolLM2: 9 query heads sharing 3 key/value heads) hand the
function fewer key/value heads than query heads; they are repeated exactly as transformers' eager
`repeat_kv` does (query head h reads key/value head h // group), so observers always see one logit
matrix per query head. The softmax runs in float32 and is cast back to the query's dtype, as eager
does. Learned sink logits (gpt-oss `s_aux`) are refused rather than silently dropped.

State (observers, probability function) lives on a small object attached to each attention module
of one model at `install`, so two loaded models never see each other's observers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import offline
from ..errors import InputError, InputTypeError

IMPLEMENTATION = "hccs_lab"
_STATE_ATTR = "_hccs_lab_state"
_LAYER_ATTR = "_hccs_lab_layer"

Observer = Callable[[int, torch.Tensor, torch.Tensor], None]
ProbsFn = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class _ModelState:
    """What one installed model carries: its observers and its softmax replacement (or None)."""

    observers: list = field(default_factory=list)
    probs_fn: ProbsFn | None = None
    n_layers: int = 0
    mask_src: object = None  # the last additive mask seen, and the boolean mask derived from it
    keymask: object = None


def keymask_from_additive(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The boolean key mask (True = key takes part) behind the mask transformers passed.

    eager_mask gives 0 / finfo(dtype).min; a boolean (SDPA-style) mask is already what we want;
    `None` means nothing is masked.
    """
    if mask is None:
        return torch.ones((1, 1, 1, like.shape[-1]), dtype=torch.bool, device=like.device)
    if mask.dtype == torch.bool:
        return mask
    # anything at or below half the most negative value is a "never attend" entry
    return mask > torch.finfo(mask.dtype).min / 2


def repeat_kv(kv: torch.Tensor, n_query_heads: int) -> torch.Tensor:
    """[B, Hkv, L, D] -> [B, n_query_heads, L, D]: query head h reads key/value head h // (n_query_heads // Hkv).

    The expansion transformers' eager attention does for grouped-query models (Llama, SmolLM2):
    each key/value head serves a block of consecutive query heads.
    """
    b, hkv, length, d = kv.shape
    if n_query_heads % hkv:
        raise InputError(f"{n_query_heads} query heads cannot share {hkv} key/value heads evenly")
    rep = n_query_heads // hkv
    if rep == 1:
        return kv
    return kv[:, :, None, :, :].expand(b, hkv, rep, length, d).reshape(b, hkv * rep, length, d)


def hccs_lab_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Eager attention with observer and softmax-replacement seams (see the module docstring)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if kwargs.get("s_aux") is not None or getattr(module, "sinks", None) is not None:
        # gpt-oss style learned sinks add a virtual key to every row; the seam would have to show it
        raise InputError(f"{type(module).__name__} has learned attention sinks (s_aux), which the hccs_lab attention does not model")
    if key.shape[1] != query.shape[1]:  # grouped-query attention: expand as eager does
        key, value = repeat_kv(key, query.shape[1]), repeat_kv(value, query.shape[1])
    logits = torch.matmul(query, key.transpose(-1, -2)) * scaling

    state: _ModelState | None = getattr(module, _STATE_ATTR, None)
    layer = getattr(module, _LAYER_ATTR, None)
    needs_keymask = state is not None and (state.observers or state.probs_fn is not None)
    keymask = None
    if needs_keymask:
        # every layer of one forward gets the same mask tensor: derive the boolean mask once
        if state.mask_src is not None and state.mask_src is attention_mask and state.keymask.shape[-1] == logits.shape[-1]:
            keymask = state.keymask
        else:
            keymask = keymask_from_additive(attention_mask, logits)
            state.mask_src, state.keymask = attention_mask, keymask

    if state is not None:
        for fn in list(state.observers):
            fn(layer, logits, keymask)

    if state is not None and state.probs_fn is not None:
        probs = state.probs_fn(layer, logits, keymask)
        if tuple(probs.shape) != tuple(logits.shape):
            raise InputError(
                f"the probability function returned shape {tuple(probs.shape)} for logits of shape {tuple(logits.shape)}"
            )
    else:
        # exactly the eager computation: masked keys get whatever eager gives them
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                attention_mask = torch.zeros_like(attention_mask, dtype=logits.dtype).masked_fill(
                    ~attention_mask, torch.finfo(logits.dtype).min
                )
            probs = nn.functional.softmax(logits + attention_mask, dim=-1, dtype=torch.float32)
        else:
            probs = nn.functional.softmax(logits, dim=-1, dtype=torch.float32)
        probs = probs.to(query.dtype)  # eager: softmax in float32, back to the query's dtype

    probs = probs.type(value.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), probs


_registered = False


def register() -> None:
    """Make "hccs_lab" a transformers attention implementation (idempotent; `install` calls it)."""
    global _registered
    if _registered:
        return
    offline()
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(IMPLEMENTATION, hccs_lab_attention)
    # REQUIRED: without a mask function a custom implementation receives attention_mask=None
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
    _registered = True


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules that call the attention interface, in layer order."""
    found = []
    for m in model.modules():
        name = type(m).__name__
        if "Attention" not in name or "Cross" in name or getattr(m, "is_cross_attention", False):
            continue
        if not hasattr(m, "layer_idx"):
            continue
        if any(getattr(c, "layer_idx", None) is not None and "Attention" in type(c).__name__ for c in m.children()):
            continue  # a wrapper (e.g. BertAttention) around the module that does the work
        found.append(m)
    return found


def install(model: nn.Module) -> nn.Module:
    """Switch a Hugging Face model (BERT family, GPT-2, ...) to the hccs_lab attention; idempotent.

    Returns the same model. Raises TypeError for anything that is not a transformers model with
    self-attention modules the interface can reach.
    """
    register()
    if not hasattr(model, "set_attn_implementation") or not hasattr(model, "config"):
        raise InputTypeError(f"install needs a transformers PreTrainedModel, got {type(model).__name__}")
    mods = attention_modules(model)
    if not mods:
        raise InputTypeError(f"{type(model).__name__} has no self-attention modules with a layer index; cannot install")
    if model.config._attn_implementation != IMPLEMENTATION:
        model.set_attn_implementation(IMPLEMENTATION)
    if model.config._attn_implementation != IMPLEMENTATION:
        raise InputTypeError(f"{type(model).__name__} does not accept a custom attention implementation")
    existing = getattr(mods[0], _STATE_ATTR, None)
    state = existing if isinstance(existing, _ModelState) and all(getattr(m, _STATE_ATTR, None) is existing for m in mods) else _ModelState()
    for order, m in enumerate(mods):
        idx = m.layer_idx if isinstance(m.layer_idx, int) else order
        # plain attribute (not a Module/Parameter): stays out of state_dict
        object.__setattr__(m, _STATE_ATTR, state)
        object.__setattr__(m, _LAYER_ATTR, int(idx))
    state.n_layers = len(mods)
    return model


def state_of(model: nn.Module) -> _ModelState:
    mods = attention_modules(model) if hasattr(model, "modules") else []
    st = getattr(mods[0], _STATE_ATTR, None) if mods else None
    if st is None or getattr(getattr(model, "config", None), "_attn_implementation", None) != IMPLEMENTATION:
        raise InputError(
            f"{type(model).__name__} does not use the hccs_lab attention; call hccs_lab.attention.install(model) first"
        )
    return st


@contextlib.contextmanager
def observe(model: nn.Module, fn: Observer) -> Iterator[None]:
    """Call `fn(layer, logits, keymask)` for every layer on every forward while the block runs.

    `logits` is [B, H, Lq, Lk] (q @ k^T * scaling, no additive mask, not detached); `keymask` is a
    boolean tensor broadcastable to it, True where the key takes part.
    """
    if not callable(fn):
        raise InputTypeError(f"observer must be callable, got {type(fn).__name__}")
    state = state_of(model)
    state.observers.append(fn)
    try:
        yield
    finally:
        state.observers.remove(fn)


def set_probs(model: nn.Module, fn: ProbsFn | None) -> nn.Module:
    """Replace the softmax of every layer by `fn(layer, logits, keymask) -> probs` (None: exact eager softmax)."""
    if fn is not None and not callable(fn):
        raise InputTypeError(f"probability function must be callable or None, got {type(fn).__name__}")
    state_of(model).probs_fn = fn
    return model
