"""Block wrappers: a frozen timm block run through its residual recipe, plus trainable in-block modules.

``BlockWrapper`` is the common base (attribute delegation, structural discovery of the trainable modules, optional
preparation of a whole block stack at once); ``AdaptedBlock`` is IV-tuning's (HA + IPA after each residual,
docs/METHOD.md sections 3.9 and 4). The PETL baselines live in ``vpt.py``, ``adaptformer.py`` and ``lora.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..modules.adapters import (
    HAWeights,
    HybridAdapter,
    InsertionPoint,
    PromptWeights,
    hybrid_adapter,
    prepare_adapters,
    prepare_prompts,
    prompt_forward,
    split_prompts,
)
from .recipes import Recipe


class BlockWrapper(nn.Module):
    """Base of every wrapper around a timm block.

    Subclasses hold the block as ``self.block``, take ``forward(x, *, z, hw, num_prefix_tokens=0, **block_kwargs)``
    on (B, P + h*w, C) tokens, and list their trainable modules in :meth:`iv_modules` (the backbone finds them by
    visiting wrappers, never by a name). Unknown attributes are forwarded to the wrapped block, because timm walks
    into blocks (e.g. Swin's ``set_input_size``).
    """

    block: nn.Module
    recipe: Recipe

    def __init__(self, block: nn.Module, recipe: Recipe) -> None:
        super().__init__()
        self.block = block
        self.recipe = recipe

    def iv_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        *,
        z: torch.Tensor | None = None,
        hw: tuple[int, int],
        num_prefix_tokens: int = 0,
        **block_kwargs: Any,
    ) -> torch.Tensor:
        """x: (B, P + h*w, C) -> same shape: :meth:`residuals`; ``z`` (the IV-tuning internal prompt) is not used."""
        return self.residuals(x, hw, num_prefix_tokens, **block_kwargs)

    def residuals(self, x: torch.Tensor, hw: tuple[int, int], num_prefix_tokens: int = 0,
                  **block_kwargs: Any) -> torch.Tensor:
        """The block's two residuals as its recipe restates them. Wrappers that change a residual override
        :meth:`mlp_residual`; one that changes the tokens around the block (VPT) overrides this."""
        x = self.recipe.attn(self.block, x, hw, **block_kwargs)
        return self.mlp_residual(x, hw)

    def mlp_residual(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.recipe.mlp(self.block, x, hw)

    @classmethod
    def prepare_group(
        cls, blocks: Sequence[BlockWrapper], z: torch.Tensor | None = None, hw: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Extra ``forward`` keywords for each of ``blocks`` (all of this class, run in this order in one forward).

        A wrapper whose parameters can be prepared for many blocks at once (fewer dispatched ops) overrides this;
        ``z`` is given when the blocks share one internal prompt (a Swin stage). The default adds nothing.
        """
        return [{} for _ in blocks]

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


class BlockPrep(NamedTuple):
    """What :meth:`AdaptedBlock.prepare_group` hands one block: both adapters' weights, and either the two IPAs'
    weights (the block computes its prompts from ``z``) or the two prompts already computed (shared ``z``)."""

    attn: HAWeights
    mlp: HAWeights
    prompt_weights: PromptWeights | None
    prompts: tuple[torch.Tensor, torch.Tensor] | None


class AdaptedBlock(BlockWrapper):
    """Runs ``block`` as its recipe says and applies ``x_p <- HA(x_p) + IPA(z)`` after each residual.

    Only the patch tokens ``x_p`` are adapted: prefix tokens (class, registers) pass untouched.
    Unknown attributes are forwarded to the wrapped block, because timm walks into blocks
    (e.g. Swin's ``set_input_size``).
    """

    def __init__(self, block: nn.Module, recipe: Recipe, dim: int, **adapter_kwargs: Any) -> None:
        super().__init__(block, recipe)
        self.iv_attn = InsertionPoint(dim, **adapter_kwargs)
        self.iv_mlp = InsertionPoint(dim, **adapter_kwargs)

    @classmethod
    def prepare_group(
        cls, blocks: Sequence[BlockWrapper], z: torch.Tensor | None = None, hw: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Prepare every insertion point of ``blocks`` with one op per parameter kind (docs/METHOD.md section 3).

        With a shared internal prompt ``z`` (Swin: fixed for a whole stage) all IPAs of the group also run here, as
        one batched computation; otherwise each block runs its two IPAs together on its own ``z``. Blocks of
        different widths (not found in the supported families) are prepared one by one.
        """
        blocks = list(blocks)
        points = [p for b in blocks for p in (b.iv_attn, b.iv_mlp)]
        shape = points[0].adapter.down.weight.shape, points[0].prompt.down.weight.shape
        if len(blocks) > 1 and any((p.adapter.down.weight.shape, p.prompt.down.weight.shape) != shape
                                   for p in points):
            return [extra for b in blocks for extra in cls.prepare_group([b], z, hw)]
        adapters = prepare_adapters([p.adapter for p in points])
        weights = prepare_prompts([p.prompt for p in points], [p.adapter.up.bias for p in points])
        if z is not None:
            prompts = prompt_forward(points[0].prompt, weights, z)
            return [{"prepared": BlockPrep(adapters[2 * i], adapters[2 * i + 1], None, prompts[2 * i: 2 * i + 2])}
                    for i in range(len(blocks))]
        per_block = split_prompts(weights, 2) if len(blocks) > 1 else [weights]
        return [{"prepared": BlockPrep(adapters[2 * i], adapters[2 * i + 1], w, None)}
                for i, w in enumerate(per_block)]

    def forward(
        self,
        x: torch.Tensor,
        *,
        z: torch.Tensor,
        hw: tuple[int, int],
        num_prefix_tokens: int = 0,
        prepared: BlockPrep | None = None,
        **block_kwargs: Any,
    ) -> torch.Tensor:
        """x: (B, P + h*w, C) tokens, z: (B, h*w, C) internal prompt; returns tokens of x's shape.

        ``prepared`` comes from :meth:`prepare_group` (the backbone prepares all blocks once per forward); without
        it the block prepares itself.
        """
        if prepared is None:
            prepared = self.prepare_group([self])[0]["prepared"]
        if prepared.prompts is not None:
            p_attn, p_mlp = prepared.prompts
        else:
            p_attn, p_mlp = prompt_forward(self.iv_attn.prompt, prepared.prompt_weights, z)
        x = self.recipe.attn(self.block, x, hw, **block_kwargs)
        x = self._adapt(self.iv_attn.adapter, prepared.attn, x, p_attn, hw, num_prefix_tokens)
        x = self.recipe.mlp(self.block, x, hw)
        return self._adapt(self.iv_mlp.adapter, prepared.mlp, x, p_mlp, hw, num_prefix_tokens)

    @staticmethod
    def _adapt(
        adapter: HybridAdapter, weights: HAWeights, x: torch.Tensor, prompt: torch.Tensor, hw: tuple[int, int],
        num_prefix_tokens: int,
    ) -> torch.Tensor:
        if num_prefix_tokens == 0:
            return hybrid_adapter(adapter, weights, x, hw, prompt)
        # one split (its backward: one cat) instead of two slices (two zero-filled full-size gradients and an add)
        prefix, patches = x.split([num_prefix_tokens, x.shape[1] - num_prefix_tokens], dim=1)
        return torch.cat([prefix, hybrid_adapter(adapter, weights, patches, hw, prompt)], dim=1)

    def iv_modules(self) -> list[nn.Module]:
        return [self.iv_attn, self.iv_mlp]
