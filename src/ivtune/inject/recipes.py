"""The residual recipe type: timm's block forward restated in two halves, so adapters can sit after each residual.

A recipe reuses the block's own submodules (no backbone code is copied) and takes and returns (B, P + h*w, C)
tokens. The recipes themselves live with their backbone family (``ivtune.backbones.vit`` / ``eva`` / ``swin``),
keyed by exact block class there; the wrappers in this package only call them (docs/METHOD.md section 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ResidualFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """How to run the attention half and the MLP half of one block class."""

    family: str
    attn: ResidualFn  # (block, tokens, hw, **block_kwargs) -> tokens
    mlp: ResidualFn  # (block, tokens, hw) -> tokens
