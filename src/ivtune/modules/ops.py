"""Parameter-light operators shared by the adapters and the prompt generator (docs/METHOD.md sections 3.1-3.3).

Besides the modules, this file holds their *fused* forms: exact reparametrisations of the same formulas that dispatch
fewer operations (every small op is a kernel launch the GPU waits for at small batch sizes). Each is tested against
the plain formula in float64, outputs and gradients (tests/core/test_fused_ops.py); the parameters themselves, their
names and the adapter files are unchanged. The folded tensors are recomputed from the parameters on every forward,
so they can never go stale after an optimiser step or a ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def tokens_to_grid(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) row-major tokens -> (B, C, h, w) map. ``hw`` is (rows, columns): never infer it from N."""
    b, n, c = x.shape
    h, w = hw
    if n != h * w:
        raise ValueError(f"token count {n} does not match the grid {h}x{w}")
    return x.transpose(1, 2).reshape(b, c, h, w)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), row-major: the inverse of :func:`tokens_to_grid`."""
    return x.flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------- SimAM
class _SimAMFunction(torch.autograd.Function):
    """SimAM with a hand-written backward (docs/METHOD.md section 3.1).

    Autograd would record 26 small ops for the backward of SimAM's 9-op forward; the closed form below needs 15.
    With ``m = x - mean(x)``, ``d = m^2``, ``D = 4 (v + eps)``, ``v = sum(d) / n'``, ``s = sigmoid(d / D + 1/2)``
    and ``y = x s``, for an upstream gradient ``g``:

        g_e = g s x (1 - s);   k = -(4 / n') sum(g_e d) / D^2;   t = m g_e / D + k m
        dy/dx^T g = g s + 2 (t - mean(t))

    (``mean(m) = 0`` removes the mean's second term). Every op is elementwise or a reduction over ``dims`` in the
    input's dtype, so it behaves the same under autocast and ``torch.compile`` (which traces both directions).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dims: tuple[int, ...], eps: float, n_minus_1: int) -> torch.Tensor:  # noqa: D102
        var, mean = torch.var_mean(x, dim=dims, correction=1 if n_minus_1 > 0 else 0, keepdim=True)
        m = x - mean
        # 4 (v + eps) == 4 v + 4 eps exactly: scaling by 4 commutes with rounding
        denom = var.mul(4.0).add_(4.0 * eps)
        s = torch.sigmoid((m.square() / denom).add_(0.5))
        ctx.save_for_backward(x, m, s, denom)
        ctx.dims = dims
        ctx.scale = -4.0 / max(n_minus_1, 1)
        return x * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, m, s, denom = ctx.saved_tensors
        gs = grad * s
        ge = gs * x * (1.0 - s)  # dL/de
        w = ge * m
        k = (w * m).sum(dim=ctx.dims, keepdim=True).div_(denom.square()).mul_(ctx.scale)
        t = torch.addcmul(w / denom, k, m)
        gx = torch.add(gs, t - t.mean(dim=ctx.dims, keepdim=True), alpha=2.0)
        return gx, None, None, None


def simam(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-4) -> torch.Tensor:
    """SimAM of ``x`` with statistics over ``dims`` (the positions), per sample and channel."""
    positions = 1
    for d in dims:
        positions *= x.shape[d]
    # unbiased variance; a single position has zero spread (the formula's h*w - 1 = 0 would divide by zero)
    if torch.compiler.is_compiling():  # the compiler fuses the plain formula and derives its backward itself
        var, mean = torch.var_mean(x, dim=dims, correction=1 if positions > 1 else 0, keepdim=True)
        return x * torch.sigmoid((x - mean).square() / (4.0 * var + 4.0 * eps) + 0.5)
    return _SimAMFunction.apply(x, tuple(dims), float(eps), positions - 1)


class SimAM(nn.Module):
    """Parameter-free attention: each position weighted by the sigmoid of its energy over the map.

    Invariant to spatial permutations, which is why the authors' H/W swap before it was harmless, and why it can
    run on (B, N, C) tokens directly (:meth:`forward_tokens`: statistics over N) without making a grid first.
    """

    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) map -> same shape."""
        return simam(x, (-2, -1), self.eps)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens -> same shape; equals ``forward`` on the token grid."""
        return simam(x, (1,), self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


# ---------------------------------------------------------------------------------------------------- stacking
class _StackParams(torch.autograd.Function):
    """``torch.stack`` whose backward is one ``unbind`` (autograd's is one ``select`` per input).

    The K gradients come back as views of one contiguous tensor, which the optimiser's gradient accumulation takes
    as they are; with ``torch.stack`` every parameter would cost an extra op, and a copy when the folded tensor is
    used transposed.
    """

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.stack(tensors)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return grad.contiguous().unbind(0)


def stack_params(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-shape tensors (the same parameter of K modules) along a new first dim, gradients included."""
    if torch.compiler.is_compiling():  # op counts do not matter in a compiled graph, and this traces faster
        return torch.stack(list(tensors))
    return _StackParams.apply(*tensors)


# ---------------------------------------------------------------------------------------------------- Hybrid Operation
class HOWeights(NamedTuple):
    """A :class:`HybridOperation`'s parameters in the form its fused forward uses (recomputed every forward).

    ``dw_weight`` / ``dw_bias`` are a depth-wise 3x3 kernel over *all* channels that computes
    ``y = [DW3(x_a), x_b] + x`` in one convolution: the learnt kernel plus 1 at the centre on the first quarter, 2 at
    the centre (and zero bias) on the rest. In eval mode the BatchNorm is folded into ``fc1_weight`` /
    ``fc1_bias`` (``bn_folded``); in train mode they are the layer's own.
    """

    dw_weight: torch.Tensor  # (c, 1, 3, 3)
    dw_bias: torch.Tensor  # (c,)
    fc1_weight: torch.Tensor  # (c, c, 1, 1)
    fc1_bias: torch.Tensor  # (c,)
    bn_folded: bool


class HybridOperation(nn.Module):
    """Partial depth-wise 3x3 conv on a quarter of the channels, then a residual 1x1 conv-BN-ReLU-conv.

    ``y = [DW3(x_a), x_b] + x`` doubles ``x_b``; that is the authors' computation and is kept as is.
    Parameters: ``10*floor(c/4) + 2*(c*c + c) + 2*c``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.partial = channels // 4
        self.dwconv = (
            nn.Conv2d(self.partial, self.partial, 3, padding=1, groups=self.partial) if self.partial else None
        )
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels, channels, 1)
        # the "+ x" of y = [DW3(x_a), x_b] + x as a depth-wise kernel (not saved: adapter files are unchanged)
        residual = torch.zeros(channels, 1, 3, 3)
        residual[: self.partial, 0, 1, 1] = 1.0
        residual[self.partial :, 0, 1, 1] = 2.0
        self.register_buffer("residual_kernel", residual, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) map -> same shape (the prompt generator's layout)."""
        return hybrid_operation_grid(self, prepare_hybrid_operations([self])[0], x)

    def forward_tokens(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) row-major tokens of an (h, w) grid -> same shape.

        The adapters' layout: the tokens are viewed as a channels-last grid (no copy) and every layer runs as a
        convolution on it, whose output is channels-last again.
        """
        b, n, c = x.shape
        if n != hw[0] * hw[1]:
            raise ValueError(f"token count {n} does not match the grid {hw[0]}x{hw[1]}")
        grid = x.reshape(b, hw[0], hw[1], c).permute(0, 3, 1, 2)
        out = hybrid_operation_grid(self, prepare_hybrid_operations([self])[0], grid)
        return out.permute(0, 2, 3, 1).reshape(b, n, c)


def prepare_hybrid_operations(ops: Sequence[HybridOperation]) -> list[HOWeights]:
    """The fused-form weights of several same-width Hybrid Operations, computed with one op per kind for all.

    In eval mode (``bn.training`` False) each BatchNorm is folded into its ``fc1``:
    ``BN(W y + b) = (s W) y + (b - mu) s + beta`` with ``s = gamma / sqrt(var + eps)``.
    """
    ops = list(ops)
    first = ops[0]
    if any(o.bn.training != first.bn.training for o in ops[1:]):  # mixed modes: each folds (or not) on its own
        return [w for o in ops for w in prepare_hybrid_operations([o])]
    k, c, p = len(ops), first.channels, first.partial
    if first.dwconv is None:  # no depth-wise part: y = x + x
        dw, dw_b = first.residual_kernel.expand(k, c, 1, 3, 3), first.residual_kernel.new_zeros(k, c)
    else:
        dw = F.pad(stack_params([o.dwconv.weight for o in ops]), (0, 0, 0, 0, 0, 0, 0, c - p)) + first.residual_kernel
        dw_b = F.pad(stack_params([o.dwconv.bias for o in ops]), (0, c - p))
    if first.bn.training:
        fc1: Sequence[torch.Tensor] = [o.fc1.weight for o in ops]
        fc1_bias: Sequence[torch.Tensor] = [o.fc1.bias for o in ops]
    else:
        bn = [o.bn for o in ops]
        scale = stack_params([m.weight for m in bn]) * torch.rsqrt(torch.stack([m.running_var for m in bn])
                                                                   + first.bn.eps)
        fc1 = (stack_params([o.fc1.weight for o in ops]) * scale.view(k, c, 1, 1, 1)).unbind(0)
        fc1_bias = torch.addcmul(stack_params([m.bias for m in bn]), stack_params([o.fc1.bias for o in ops])
                                 - torch.stack([m.running_mean for m in bn]), scale).unbind(0)
    dw, dw_b = dw.unbind(0), dw_b.unbind(0)
    # indexing, not zip(strict=True): dynamo (torch 2.14) mis-traces a strict zip over unbind outputs
    return [HOWeights(dw[i], dw_b[i], fc1[i], fc1_bias[i], not first.bn.training) for i in range(k)]


def hybrid_operation_grid(op: HybridOperation, w: HOWeights, x: torch.Tensor) -> torch.Tensor:
    """The Hybrid Operation on a (B, c, h, w) map, any memory format (docs/METHOD.md section 3.2).

    Four convolutions (the 1x1 layers as 1x1 convolutions: one op forward and one backward each, where a matrix
    product costs two and six) and the BatchNorm; the BN's batch statistics are per channel over (B, h, w).
    """
    y = F.conv2d(x, w.dw_weight, w.dw_bias, padding=1, groups=op.channels)
    h = F.conv2d(y, w.fc1_weight, w.fc1_bias)
    if not w.bn_folded:
        bn = op.bn
        if bn.training and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)  # as nn.BatchNorm does; the counter is part of the adapter file
        h = torch.native_batch_norm(h, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.training,
                                    bn.momentum if bn.momentum is not None else 0.0, bn.eps)[0]
    return F.conv2d(torch.relu(h), op.fc2.weight, op.fc2.bias) + y


# ---------------------------------------------------------------------------------------------------- SFT
class SFT(nn.Module):
    """Simple feature transform ``LN(x) * gamma + beta`` (the LayerNorm keeps its own affine: 4C parameters)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x_hat * w + b) * gamma + beta == x_hat * (w * gamma) + (b * gamma + beta): one LayerNorm with folded
        # affine instead of three full-size ops, and one saved activation fewer per call (gradients are unchanged)
        n = self.norm
        return F.layer_norm(x, n.normalized_shape, n.weight * self.gamma, torch.addcmul(self.beta, n.bias, self.gamma),
                            n.eps)


def fold_sft(sfts: Sequence[SFT]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, C) LayerNorm weights and biases with the SFT affine folded in, for K SFTs at once."""
    gamma = stack_params([s.gamma for s in sfts])
    weight = stack_params([s.norm.weight for s in sfts]) * gamma
    bias = torch.addcmul(stack_params([s.beta for s in sfts]), stack_params([s.norm.bias for s in sfts]), gamma)
    return weight, bias
