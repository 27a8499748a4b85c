"""Parameter-light operators shared by the adapters and the prompt generator (SPEC.md sections 3.1-3.3)."""

from __future__ import annotations

import torch
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

    Invariant to spatial permutations, which is why the authors' H/W swap before it was harmless.
    """

    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[-2] * x.shape[-1] - 1, 1)  # unbiased variance; a 1x1 map would divide by zero
        d = (x - x.mean(dim=(-2, -1), keepdim=True)).pow(2)
        v = d.sum(dim=(-2, -1), keepdim=True) / n
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
        if self.dwconv is not None:
            x_a, x_b = torch.split(x, [self.partial, self.channels - self.partial], dim=1)
            y = torch.cat([self.dwconv(x_a), x_b], dim=1) + x
        else:
            y = x + x
        return self.fc2(self.act(self.bn(self.fc1(y)))) + y


class SFT(nn.Module):
    """Simple feature transform ``LN(x) * gamma + beta`` (the LayerNorm keeps its own affine: 4C parameters)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.gamma + self.beta
