"""``IVBackbone``: one frozen timm backbone that takes a visible + infrared pair (docs/METHOD.md section 4).

The class is generic: everything that differs between ViT, EVA and Swin (block containers, output indices and
geometry, prefix tokens, the forward loop) is asked of its :class:`~ivtune.backbones.family.Family`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputShapeError, UnsupportedModelError
from ..inject.recipes import Recipe
from ..inject.wrappers import BlockWrapper
from ..modules.prompt import IRPatchEmbed, PromptStem
from .families import recipe_for, supported_block_names
from .family import Family

BlockWrapperFactory = Callable[[nn.Module, Recipe, int], BlockWrapper]  # (block, recipe, dim) -> wrapper


class IVBackbone(nn.Module):
    """A timm backbone with the IV-tuning input side and (optionally) a wrapper around every block.

    ``forward(vis, ir)`` returns multi-scale NCHW maps: Swin's stages, or the ViT/EVA pseudo-pyramid;
    ``out_channels`` and ``strides`` describe them. Build it with :func:`ivtune.build_backbone`, where the
    training method chooses ``ir_input``, ``empg_hidden`` and ``block_wrapper`` from its config.

    Args:
        model: a plain timm model (``num_classes=0``) of a supported family, weights already loaded.
        family: its :class:`Family`.
        out_indices: Swin: stage indices; ViT/EVA: the four block indices tapped for the pyramid.
        ir_input: build the IR patch embedding and prompt stem; False gives a visible-only backbone that ignores
            ``ir`` (the authors' full-fine-tuning baseline, docs/METHOD.md section 10).
        empg_hidden: EMPG width of the prompt stem (8 in the final method, 64 in the authors' ViTDet-B;
            docs/METHOD.md section 3.6).
        block_wrapper: ``(block, recipe, dim) -> BlockWrapper`` applied to every block (IV-tuning's
            :class:`~ivtune.inject.wrappers.AdaptedBlock`, or a PETL baseline's); None leaves the timm blocks.
    """

    def __init__(
        self,
        model: nn.Module,
        family: Family,
        out_indices: list[int] | tuple[int, ...] | None = None,
        *,
        ir_input: bool = True,
        empg_hidden: int = 8,
        block_wrapper: BlockWrapperFactory | None = None,
    ) -> None:
        super().__init__()
        self.family = family
        self.grad_checkpointing = False
        self.build_config: dict[str, Any] = {}  # filled by the builder; written into adapter_config.json
        self.out_indices = family.check_out_indices(model, out_indices)
        self._check_blocks(model, family)  # validate everything before mutating the model
        if block_wrapper is not None and not ir_input:
            raise UnsupportedModelError("block wrappers need the internal prompt, which comes from the IR input")

        embed = model.patch_embed
        dim = embed.proj.out_channels
        self.patch_size = tuple(embed.patch_size)
        self.num_prefix_tokens = family.num_prefix_tokens(model)
        has_norm = not isinstance(getattr(embed, "norm", nn.Identity()), nn.Identity)
        norm_eps = getattr(embed.norm, "eps", 1e-5) if has_norm else 1e-5
        self.ir_input = ir_input
        self.ir_patch_embed = IRPatchEmbed(dim, self.patch_size, norm=has_norm, norm_eps=norm_eps) if ir_input else None
        self.prompt_stem = PromptStem(dim, empg_hidden) if ir_input else None
        self.model = model
        self.has_adapters = block_wrapper is not None
        if block_wrapper is not None:
            for _, container in family.stage_blocks(model):
                for i, blk in enumerate(container):
                    container[i] = block_wrapper(blk, recipe_for(blk), self._block_dim(blk))
        self.out_channels, self.strides, self.pyramid = family.output_geometry(model, self.out_indices)

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def _block_dim(blk: nn.Module) -> int:
        norm = blk.norm1
        return int(norm.normalized_shape[0])

    @staticmethod
    def _check_blocks(model: nn.Module, family: Family) -> None:
        for path, container in family.stage_blocks(model):
            for i, blk in enumerate(container):
                if recipe_for(blk) is None:
                    raise UnsupportedModelError(
                        f"Unsupported block {type(blk).__name__!r} at {path}.{i}. Supported: "
                        f"{', '.join(supported_block_names())}. Add a recipe to the {family.name} family "
                        f"({type(family).__module__}) or pick another model."
                    )
        patch_drop = getattr(model, "patch_drop", None)  # ViT: Identity when off; EVA: None when off
        if patch_drop is not None and not isinstance(patch_drop, nn.Identity):
            raise UnsupportedModelError(
                "patch dropout drops tokens and breaks the (h, w) grid the adapters need; build the model with "
                "patch_drop_rate=0."
            )

    # ------------------------------------------------------------------ trainable parts
    def iv_modules(self) -> list[nn.Module]:
        """The added modules, found structurally: IR embedding, prompt stem, every block wrapper's modules."""
        mods: list[nn.Module] = [self.ir_patch_embed, self.prompt_stem] if self.ir_input else []
        for m in self.model.modules():
            if isinstance(m, BlockWrapper):
                mods.extend(m.iv_modules())
        return mods

    def zero_init_adapters(self) -> None:
        """Zero the last projection of every adapter and of the EMPG: the backbone then equals the frozen one."""
        for m in self.iv_modules():
            if hasattr(m, "zero_output"):
                m.zero_output()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward (frozen and adapter parts alike) to save memory."""
        self.grad_checkpointing = enable

    def train(self, mode: bool = True) -> IVBackbone:
        super().train(mode)
        # a frozen BatchNorm must keep its running statistics; adapters' BNs (trainable) run in train mode
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self

    # ------------------------------------------------------------------ forward
    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this (the patch size)."""
        return max(self.patch_size)

    def check_inputs(self, vis: torch.Tensor, ir: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` with the shapes and the fix instead of a stack trace from inside timm."""
        for name, t, chans in (("vis", vis, (3,)), ("ir", ir, (1, 3))):
            if not isinstance(t, torch.Tensor):
                raise InputShapeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
            if t.ndim != 4:
                raise InputShapeError(
                    f"{name} must be a batch (B, C, H, W), got shape {tuple(t.shape)}. Add a batch dimension with "
                    f"{name}.unsqueeze(0)."
                )
            if t.shape[1] not in chans:
                want = " or ".join(map(str, chans))
                raise InputShapeError(
                    f"{name} must have {want} channels, got {t.shape[1]} (shape {tuple(t.shape)}). "
                    + ("Drop the alpha channel (x[:, :3]) or convert to RGB." if name == "vis" else
                       "Give the thermal image as 1 channel (grey) or 3 repeated channels.")
                )
            if not t.is_floating_point():
                raise InputShapeError(f"{name} must be a floating-point tensor, got {t.dtype}. Use {name}.float().")
        if vis.shape[0] != ir.shape[0]:
            raise InputShapeError(
                f"vis and ir must have the same batch size, got {vis.shape[0]} and {ir.shape[0]}. Batch the pairs "
                "together."
            )
        if vis.shape[-2:] != ir.shape[-2:]:
            raise InputShapeError(
                f"vis and ir must have the same height and width, got vis {tuple(vis.shape[-2:])} and ir "
                f"{tuple(ir.shape[-2:])}. Resize or crop the IR image to the visible image before batching."
            )
        h, w = vis.shape[-2:]
        ph, pw = self.patch_size
        if h % ph or w % pw:
            th, tw = -(-h // ph) * ph, -(-w // pw) * pw
            raise InputShapeError(
                f"Input {h}x{w} is not a multiple of the patch size {ph}x{pw} "
                f"({self.build_config.get('name', type(self.model).__name__)}). Pad to {th}x{tw} "
                "(e.g. torch.nn.functional.pad) or resize."
            )

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """vis: (B, 3, H, W); ir: (B, 1 or 3, H, W) -> list of NCHW maps with ``out_channels`` / ``strides``."""
        taps = self.forward_intermediates(vis, ir)
        if self.pyramid is None:
            return taps
        return self.pyramid(taps, tuple(vis.shape[-2:]))

    def forward_intermediates(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """The raw NCHW taps at ``out_indices`` (before the ViT pyramid), like timm's ``forward_intermediates``."""
        self.check_inputs(vis, ir)
        if ir.shape[1] == 1:
            ir = ir.expand(-1, 3, -1, -1)  # the authors repeat grey thermal images to 3 channels
        return self.family.forward(self, vis, ir)

    # ------------------------------------------------------------------ called by the family loops
    def input_prompt(self, vis_tokens: torch.Tensor, ir: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
        """``P0`` from the (B, h*w, C) visible patch tokens and the IR image; None for a visible-only backbone."""
        if not self.ir_input:
            return None
        ir_tokens = self.ir_patch_embed(ir).flatten(1, 2)
        return self.prompt_stem(vis_tokens, ir_tokens, hw)

    def run_block(self, blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Run one (wrapped or plain) block, with gradient checkpointing when enabled."""
        if not self.has_adapters:  # the plain timm block does not take the IV-tuning arguments
            kwargs = {k: v for k, v in kwargs.items() if k not in ("z", "hw", "num_prefix_tokens")}
        if self.grad_checkpointing and torch.is_grad_enabled():
            # keyword arguments only: the authors' positional call put the position bias into the prompt slot
            return checkpoint(blk, x, use_reentrant=False, **kwargs)
        return blk(x, **kwargs)
