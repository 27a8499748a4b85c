"""Block wrappers: a frozen timm block run through its residual recipe, plus trainable in-block modules.

``BlockWrapper`` is the common base (attribute delegation, structural discovery of the trainable modules);
``AdaptedBlock`` is IV-tuning's (HA + IPA after each residual, docs/METHOD.md sections 3.9 and 4). The PETL
baselines live in ``vpt.py``, ``adaptformer.py`` and ``lora.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..modules.adapters import InsertionPoint
from .recipes import Recipe


class BlockWrapper(nn.Module):
    """Base of every wrapper around a timm block.

    Subclasses hold the block as ``self.block``, take ``forward(x, *, z, hw, num_prefix_tokens=0, **block_kwargs)``
    on (B, P + h*w, C) tokens, and list their trainable modules in :meth:`iv_modules` (the backbone finds them by
    visiting wrappers, never by a name). Unknown attributes are forwarded to the wrapped block, because timm walks
    into blocks (e.g. Swin's ``set_input_size``).
    """

    block: nn.Module

    def iv_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            # read the wrapped block straight from __dict__: during __init__, deepcopy or unpickling it may not be
            # there yet, and going through getattr again would recurse forever
            block = self.__dict__.get("_modules", {}).get("block")
            if block is None:
                raise
            return getattr(block, name)


class AdaptedBlock(BlockWrapper):
    """Runs ``block`` as its recipe says and applies ``x_p <- HA(x_p) + IPA(z)`` after each residual.

    Only the patch tokens ``x_p`` are adapted: prefix tokens (class, registers) pass untouched.
    Unknown attributes are forwarded to the wrapped block, because timm walks into blocks
    (e.g. Swin's ``set_input_size``).
    """

    def __init__(self, block: nn.Module, recipe: Recipe, dim: int, **adapter_kwargs: Any) -> None:
        super().__init__()
        self.block = block
        self.recipe = recipe
        self.iv_attn = InsertionPoint(dim, **adapter_kwargs)
        self.iv_mlp = InsertionPoint(dim, **adapter_kwargs)

    def forward(
        self,
        x: torch.Tensor,
        *,
        z: torch.Tensor,
        hw: tuple[int, int],
        num_prefix_tokens: int = 0,
        **block_kwargs: Any,
    ) -> torch.Tensor:
        """x: (B, P + h*w, C) tokens, z: (B, h*w, C) internal prompt; returns tokens of x's shape."""
        x = self.recipe.attn(self.block, x, hw, **block_kwargs)
        x = self._adapt(self.iv_attn, x, z, hw, num_prefix_tokens)
        x = self.recipe.mlp(self.block, x, hw)
        return self._adapt(self.iv_mlp, x, z, hw, num_prefix_tokens)

    @staticmethod
    def _adapt(
        point: InsertionPoint, x: torch.Tensor, z: torch.Tensor, hw: tuple[int, int], num_prefix_tokens: int
    ) -> torch.Tensor:
        if num_prefix_tokens == 0:
            return point(x, z, hw)
        prefix, patches = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
        return torch.cat([prefix, point(patches, z, hw)], dim=1)

    def iv_modules(self) -> list[nn.Module]:
        return [self.iv_attn, self.iv_mlp]
