"""Parameter-light operators shared by the adapters and the prompt generator (docs/METHOD.md sections 3.1-3.3)."""

from __future__ import annotations

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
        return self._weigh(x, dims=(-2, -1))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens -> same shape; equals ``forward`` on the token grid."""
        return self._weigh(x, dims=(1,))

    def _weigh(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        positions = 1
        for d in dims:
            positions *= x.shape[d]
        n = max(positions - 1, 1)  # unbiased variance; a single position would divide by zero
        d = (x - x.mean(dim=dims, keepdim=True)).pow(2)
        v = d.sum(dim=dims, keepdim=True) / n
        energy = d / (4 * (v + self.eps)) + 0.5
        return x * torch.sigmoid(energy)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) map -> same shape (the prompt generator's layout; computed by :meth:`forward_tokens`)."""
        hw = (x.shape[-2], x.shape[-1])
        return tokens_to_grid(self.forward_tokens(grid_to_tokens(x), hw), hw)

    def forward_tokens(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) row-major tokens of an (h, w) grid -> same shape.

        The adapters' hot path: only the depth-wise conv needs a grid (a quarter of the channels); the 1x1 convs
        run as matrix products on the tokens and BN sees (B*N, C, 1, 1), the same per-channel statistics. That
        saves two layout copies per call: one insertion point ran 0.91-0.98x of a grid-layout version on an H100 (bf16,
        batch 2, ViT-S and Swin-T stage-1 sizes); on the CPU both paths take the same time.
        """
        b, n, c = x.shape
        if self.dwconv is not None:
            x_a = tokens_to_grid(x[..., : self.partial], hw)
            y = torch.cat([grid_to_tokens(self.dwconv(x_a)), x[..., self.partial :]], dim=-1) + x
        else:
            y = x + x
        h = F.linear(y, self.fc1.weight.view(c, c), self.fc1.bias)
        h = self.act(self.bn(h.reshape(b * n, c, 1, 1))).view(b, n, c)
        return F.linear(h, self.fc2.weight.view(c, c), self.fc2.bias) + y


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
        return F.layer_norm(x, n.normalized_shape, n.weight * self.gamma, n.bias * self.gamma + self.beta, n.eps)
