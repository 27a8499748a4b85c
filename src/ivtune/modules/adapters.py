"""Hybrid Adapter, Internal Prompt Adapter and the insertion point that pairs them.

docs/METHOD.md sections 3.4, 3.5 and 3.9. The modules hold the parameters; the forward runs the fused form of
``ops.py``: parameters are first turned into the tensors the computation needs (:func:`prepare_adapters`,
:func:`prepare_prompts`), for many insertion points with one op per kind, then applied with few large ops
(:func:`hybrid_adapter`, :func:`prompt_forward`). The backbone prepares a whole block stack once per forward; a
module called on its own prepares itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .ops import (
    SFT,
    HOWeights,
    HybridOperation,
    SimAM,
    fold_sft,
    hybrid_operation_grid,
    prepare_hybrid_operations,
    simam,
    stack_params,
)


def _init_linear(layer: nn.Linear) -> None:
    # SOD/EVA path of the authors' code: trunc-normal 0.02, zero bias (docs/METHOD.md section 6)
    nn.init.trunc_normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)


class HAWeights(NamedTuple):
    """A Hybrid Adapter's parameters in fused form: SFT folded into its LayerNorm, projections as 1x1 kernels."""

    ln_weight: torch.Tensor  # (C,) norm.weight * gamma
    ln_bias: torch.Tensor  # (C,) norm.bias * gamma + beta
    down_weight: torch.Tensor  # (r, C, 1, 1)
    mix: HOWeights
    up_weight: torch.Tensor  # (C, r, 1, 1)


class HybridAdapter(nn.Module):
    """``HA(X) = X + up(drop(GELU(HO(down(SFT(X))))))`` with a 3x3 token-grid mixing inside (133C + 8,672 params)."""

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.sft = SFT(dim)
        self.down = nn.Linear(dim, hidden)
        self.mix = HybridOperation(hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        _init_linear(self.down)
        _init_linear(self.up)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """x: (B, N, C) tokens of an (h, w) grid -> ``HA(x)``, same shape."""
        if x.shape[1] != hw[0] * hw[1]:
            raise ValueError(f"token count {x.shape[1]} does not match the grid {hw[0]}x{hw[1]}")
        return hybrid_adapter(self, prepare_adapters([self])[0], x, hw)

    def zero_output(self) -> None:
        """Make the adapter an identity (tests and ablations; the method itself has no zero-init)."""
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


def prepare_adapters(adapters: Sequence[HybridAdapter]) -> list[HAWeights]:
    """Fused-form weights of same-size Hybrid Adapters, one op per kind for all of them (stacked, then unbound)."""
    adapters = list(adapters)
    ln_w, ln_b = fold_sft([a.sft for a in adapters])
    down = stack_params([a.down.weight for a in adapters])
    up = stack_params([a.up.weight for a in adapters])
    mix = prepare_hybrid_operations([a.mix for a in adapters])
    ln_w, ln_b = ln_w.unbind(0), ln_b.unbind(0)
    down, up = down[..., None, None].unbind(0), up[..., None, None].unbind(0)  # as (out, in, 1, 1) kernels
    # indexing, not zip(strict=True): dynamo (torch 2.14) mis-traces a strict zip over unbind outputs
    return [HAWeights(ln_w[i], ln_b[i], down[i], mix[i], up[i]) for i in range(len(adapters))]


def hybrid_adapter(
    ha: HybridAdapter, w: HAWeights, x: torch.Tensor, hw: tuple[int, int], added: torch.Tensor | None = None
) -> torch.Tensor:
    """``HA(x) + added`` for (B, N, C) tokens ``x`` (any strides) -> (B, N, C) (docs/METHOD.md sections 3.4, 3.9).

    After the LayerNorm the tokens are viewed (no copy) as a channels-last (B, C, h, w) grid, on which the two
    projections and the Hybrid Operation are convolutions that keep that layout; only the output is viewed back.
    ``added`` is the insertion point's prompt, with the up-projection's bias already in it; without it, the bias
    is added here. The grid size is not re-checked (the backbone checks it once per forward).
    """
    b, n, c = x.shape
    u = F.layer_norm(x, (c,), w.ln_weight, w.ln_bias, ha.sft.norm.eps)
    d = F.conv2d(u.view(b, hw[0], hw[1], c).permute(0, 3, 1, 2), w.down_weight, ha.down.bias)
    d = F.gelu(hybrid_operation_grid(ha.mix, w.mix, d), approximate=ha.act.approximate)
    if ha.drop.training and ha.drop.p > 0:
        d = torch.native_dropout(d, ha.drop.p, True)[0]  # F.dropout's CPU path is 4 ops; same mask, same RNG
    out = F.conv2d(d, w.up_weight, ha.up.bias if added is None else None).permute(0, 2, 3, 1).view(b, n, c)
    return x + out if added is None else x + out + added


class PromptWeights(NamedTuple):
    """K Internal Prompt Adapters in fused form, for one batched computation on a shared internal prompt ``z``.

    ``LN(z) * a_k + c_k`` (SFT) followed by ``down_k`` is ``LN0(z) (W_k a_k)^T + (W_k c_k + b_k)`` with a LayerNorm
    without affine, so all K down-projections are one 1x1 convolution of one normalisation; the K up-projections,
    with the scale and shift folded in (``(W u + b) s + t``), are one grouped 1x1 convolution.
    """

    down_weight: torch.Tensor  # (K*r, C, 1, 1)
    down_bias: torch.Tensor  # (K*r,)
    up_weight: torch.Tensor  # (K*C, r, 1, 1)
    up_bias: torch.Tensor  # (K*C,)
    out_bias: torch.Tensor | None  # (K*C, 1, 1): added after the GELU (the paired Hybrid Adapters' up biases)


class InternalPromptAdapter(nn.Module):
    """Turns internal-prompt tokens ``Z`` into an additive prompt ``GELU(up(d) * s + t)``; no residual (23C + 8)."""

    def __init__(self, dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.sft = SFT(dim)
        self.down = nn.Linear(dim, hidden)
        self.attn = SimAM()
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        _init_linear(self.down)
        _init_linear(self.up)

    def forward(self, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """z: (B, N, C) internal-prompt tokens -> (B, N, C) prompt."""
        return prompt_forward(self, prepare_prompts([self]), z)[0]

    def zero_output(self) -> None:
        # GELU(0 * s + t) with t = 0 is exactly 0
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


def prepare_prompts(
    ipas: Sequence[InternalPromptAdapter], out_biases: Sequence[torch.Tensor] | None = None
) -> PromptWeights:
    """Fused-form weights of K same-size Internal Prompt Adapters (and the biases added after them, if any)."""
    ipas = list(ipas)
    k, r, c = len(ipas), ipas[0].down.out_features, ipas[0].down.in_features
    a, cc = fold_sft([i.sft for i in ipas])  # (K, C)
    wd = stack_params([i.down.weight for i in ipas])  # (K, r, C)
    down_weight = (wd * a.unsqueeze(1)).view(k * r, c, 1, 1)
    down_bias = torch.baddbmm(stack_params([i.down.bias for i in ipas]).unsqueeze(2), wd, cc.unsqueeze(2))
    scale = stack_params([i.scale for i in ipas])
    up_weight = (stack_params([i.up.weight for i in ipas]) * scale.unsqueeze(2)).view(k * c, r, 1, 1)
    up_bias = torch.addcmul(stack_params([i.shift for i in ipas]), stack_params([i.up.bias for i in ipas]), scale)
    out_bias = stack_params(out_biases).view(k * c, 1, 1) if out_biases is not None else None
    return PromptWeights(down_weight, down_bias.view(k * r), up_weight, up_bias.view(k * c), out_bias)


def split_prompts(w: PromptWeights, size: int) -> list[PromptWeights]:
    """Consecutive groups of ``size`` adapters from a :class:`PromptWeights` (views: one op per tensor kind)."""
    kr, c = w.down_weight.shape[0], w.down_weight.shape[1]
    k = w.up_weight.shape[0] // c
    r = kr // k
    parts = [w.down_weight.split(size * r), w.down_bias.split(size * r), w.up_weight.split(size * c),
             w.up_bias.split(size * c)]
    outs = w.out_bias.split(size * c) if w.out_bias is not None else [None] * len(parts[0])
    return [PromptWeights(*(p[i] for p in parts), outs[i]) for i in range(len(outs))]


def prompt_forward(ipa: InternalPromptAdapter, w: PromptWeights, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The K prompts of :class:`PromptWeights` ``w`` from one (B, N, C) internal prompt -> K (B, N, C) views.

    One LayerNorm, one down-projection, one SimAM over the concatenated hidden channels (its statistics are per
    channel, so concatenating is exact), one GELU, one grouped up-projection, one GELU (docs/METHOD.md 3.5).
    SimAM ignores where a position lies, so the tokens are viewed as an (N, 1) channels-last grid. ``ipa``
    supplies the shared hyperparameters (norm and SimAM eps, GELU variant).
    """
    b, n, c = z.shape
    k = w.up_weight.shape[0] // c
    zh = F.layer_norm(z, (c,), None, None, ipa.sft.norm.eps)
    d = F.conv2d(zh.view(b, n, 1, c).permute(0, 3, 1, 2), w.down_weight, w.down_bias)  # (B, K*r, N, 1)
    d = F.gelu(simam(d, (2, 3), ipa.attn.eps), approximate=ipa.act.approximate)
    q = F.gelu(F.conv2d(d, w.up_weight, w.up_bias, groups=k), approximate=ipa.act.approximate)
    if w.out_bias is not None:
        q = q + w.out_bias
    return q.permute(0, 2, 3, 1).view(b, n, k * c).split(c, dim=-1)


class InsertionPoint(nn.Module):
    """One insertion point of a block: ``x <- HA(x) + IPA(z)``.

    Every block owns two of these (after the attention residual and after the MLP residual), never shared:
    only separate modules reproduce the published parameter counts (docs/METHOD.md section 5).
    """

    def __init__(self, dim: int, adapter_hidden: int = 64, prompt_hidden: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.adapter = HybridAdapter(dim, adapter_hidden, dropout)
        self.prompt = InternalPromptAdapter(dim, prompt_hidden)

    def forward(self, x: torch.Tensor, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if x.shape[1] != hw[0] * hw[1]:
            raise ValueError(f"token count {x.shape[1]} does not match the grid {hw[0]}x{hw[1]}")
        prompt = prompt_forward(self.prompt, prepare_prompts([self.prompt], [self.adapter.up.bias]), z)[0]
        return hybrid_adapter(self.adapter, prepare_adapters([self.adapter])[0], x, hw, prompt)

    def zero_output(self) -> None:
        self.adapter.zero_output()
        self.prompt.zero_output()
