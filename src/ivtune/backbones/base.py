"""``IVBackbone``: one frozen timm backbone that takes a visible + infrared pair (SPEC.md section 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputShapeError, UnsupportedModelError
from ..inject.recipes import Recipe, recipe_for, supported_block_names
from ..inject.wrappers import AdaptedBlock, BlockWrapper
from ..modules.prompt import IRPatchEmbed, PromptStem
from .families import Family
from .pyramid import PYRAMID_STRIDES, SimplePyramid


def _stage_blocks(model: nn.Module, family: Family) -> list[tuple[str, nn.Sequential]]:
    """(path, container) of every block container: ``blocks`` for ViT/EVA, ``layers.<s>.blocks`` for Swin."""
    if family.hierarchical:
        return [(f"layers.{s}.blocks", stage.blocks) for s, stage in enumerate(model.layers)]
    return [("blocks", model.blocks)]


def evenly_spaced_indices(depth: int, n: int = 4) -> list[int]:
    """``n`` block indices ending at the last block, e.g. depth 12 -> [2, 5, 8, 11]."""
    return [max(round((k + 1) * depth / n) - 1, 0) for k in range(n)]


class IVBackbone(nn.Module):
    """A timm backbone with the IV-tuning input side and (optionally) adapters in every block.

    ``forward(vis, ir)`` returns multi-scale NCHW maps: Swin's stages, or the ViT/EVA pseudo-pyramid;
    ``out_channels`` and ``strides`` describe them. Build it with :func:`ivtune.build_backbone`.

    Args:
        model: a plain timm model (``num_classes=0``) of a supported family, weights already loaded.
        family: its :class:`Family`.
        out_indices: Swin: stage indices; ViT/EVA: the four block indices tapped for the pyramid.
        adapters: wrap every block with HA/IPA insertion points (False: IR embedding + prompt only).
        ir_input: build the IR patch embedding and prompt stem; False gives a visible-only backbone that ignores
            ``ir`` (the authors' full-fine-tuning baseline; requires ``adapters=False``).
        adapter_kwargs: ``adapter_hidden``, ``prompt_hidden``, ``dropout`` for the insertion points.
        prompt_hidden: EMPG width (8 in the final method, 64 in the authors' ViTDet-B).
        block_wrapper: ``(block, recipe, dim) -> BlockWrapper`` for another in-block design (the PETL baselines in
            ``ivtune.methods``); default: IV-tuning's :class:`AdaptedBlock` with ``adapter_kwargs``.
    """

    def __init__(
        self,
        model: nn.Module,
        family: Family,
        out_indices: list[int] | tuple[int, ...] | None = None,
        *,
        adapters: bool = True,
        ir_input: bool = True,
        adapter_kwargs: dict[str, Any] | None = None,
        prompt_hidden: int = 8,
        block_wrapper: Callable[[nn.Module, Recipe, int], BlockWrapper] | None = None,
    ) -> None:
        super().__init__()
        self.family = family
        self.grad_checkpointing = False
        self.build_config: dict[str, Any] = {}  # filled by the factory; written into adapter_config.json
        self.out_indices = self._check_out_indices(model, family, out_indices)
        self._check_blocks(model, family)  # validate everything before mutating the model
        if adapters and not ir_input:
            raise UnsupportedModelError("adapters need the internal prompt, which comes from the IR input")

        embed = model.patch_embed
        dim = embed.proj.out_channels
        self.patch_size = tuple(embed.patch_size)
        self.num_prefix_tokens = 0 if family.hierarchical else int(getattr(model, "num_prefix_tokens", 0))
        has_norm = not isinstance(getattr(embed, "norm", nn.Identity()), nn.Identity)
        norm_eps = getattr(embed.norm, "eps", 1e-5) if has_norm else 1e-5
        self.ir_input = ir_input
        self.ir_patch_embed = IRPatchEmbed(dim, self.patch_size, norm=has_norm, norm_eps=norm_eps) if ir_input else None
        self.prompt_stem = PromptStem(dim, prompt_hidden) if ir_input else None
        self.model = model
        self.has_adapters = adapters
        if adapters:
            if block_wrapper is None:
                def block_wrapper(blk: nn.Module, recipe: Recipe, dim: int) -> BlockWrapper:
                    return AdaptedBlock(blk, recipe, dim, **(adapter_kwargs or {}))
            for _, container in _stage_blocks(model, family):
                for i, blk in enumerate(container):
                    container[i] = block_wrapper(blk, recipe_for(blk), self._block_dim(blk))

        if family.hierarchical:
            self.out_channels = [model.feature_info[i]["num_chs"] for i in self.out_indices]
            self.strides = [model.feature_info[i]["reduction"] for i in self.out_indices]
            self.pyramid = None
        else:
            self.out_channels = [dim] * len(self.out_indices)
            self.strides = list(PYRAMID_STRIDES)
            self.pyramid = SimplePyramid()

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def _block_dim(blk: nn.Module) -> int:
        norm = blk.norm1
        return int(norm.normalized_shape[0])

    @staticmethod
    def _check_blocks(model: nn.Module, family: Family) -> None:
        for path, container in _stage_blocks(model, family):
            for i, blk in enumerate(container):
                if recipe_for(blk) is None:
                    raise UnsupportedModelError(
                        f"Unsupported block {type(blk).__name__!r} at {path}.{i}. Supported: "
                        f"{', '.join(supported_block_names())}. Add a recipe in ivtune.inject.recipes or pick "
                        "another model."
                    )
        patch_drop = getattr(model, "patch_drop", None)  # ViT: Identity when off; EVA: None when off
        if patch_drop is not None and not isinstance(patch_drop, nn.Identity):
            raise UnsupportedModelError(
                "patch dropout drops tokens and breaks the (h, w) grid the adapters need; build the model with "
                "patch_drop_rate=0."
            )

    @staticmethod
    def _check_out_indices(model: nn.Module, family: Family, out_indices) -> list[int]:
        if family.hierarchical:
            n, what, default = len(model.layers), "stage", list(range(len(model.layers)))
        else:
            n, what = len(model.blocks), "block"
            default = evenly_spaced_indices(n)
        if out_indices is None:
            return default
        idx = [int(i) for i in out_indices]
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise UnsupportedModelError(
                f"out_indices {idx} has {bad} outside the model's {n} {what}s (valid: 0..{n - 1} or -{n}..-1)."
            )
        idx = [i % n for i in idx]
        if not family.hierarchical and len(idx) != len(PYRAMID_STRIDES):
            raise UnsupportedModelError(
                f"a {family.name} backbone needs exactly 4 out_indices for the x4/x2/x1/x0.5 pyramid, got {idx}; "
                f"e.g. {evenly_spaced_indices(n)}."
            )
        return idx

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
        if self.family.hierarchical:
            return self._forward_hierarchical(vis, ir)
        return self._forward_columnar(vis, ir)

    def _prompt(self, vis_tokens: torch.Tensor, ir: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
        if not self.ir_input:
            return None
        ir_tokens = self.ir_patch_embed(ir).flatten(1, 2)
        return self.prompt_stem(vis_tokens, ir_tokens, hw)

    def _block(self, blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if not self.has_adapters:  # the plain timm block
            kwargs = {k: v for k, v in kwargs.items() if k not in ("z", "hw", "num_prefix_tokens")}
        if self.grad_checkpointing and torch.is_grad_enabled():
            # keyword arguments only: the authors' positional call put the position bias into the prompt slot
            return checkpoint(blk, x, use_reentrant=False, **kwargs)
        return blk(x, **kwargs)

    def _forward_columnar(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """ViT / DINOv2 / EVA-02: prompt added before prefix tokens and position embedding; z = previous block."""
        m = self.model
        b = vis.shape[0]
        x = m.patch_embed(vis)
        if x.ndim == 4:  # dynamic_img_size: NHWC
            hw = (x.shape[1], x.shape[2])
        else:  # fixed size: (B, N, C)
            hw = tuple(m.patch_embed.dynamic_feat_size(tuple(vis.shape[-2:])))
        c = x.shape[-1]
        p0 = self._prompt(x.reshape(b, -1, c), ir, hw)
        if p0 is not None:
            x = x + p0.reshape(x.shape)
        rope = None
        if self.family.name == "eva":
            x, rope = m._pos_embed(x)
        else:
            x = m._pos_embed(x)
            x = m.patch_drop(x)
        x = m.norm_pre(x)
        npt = self.num_prefix_tokens
        per_block_rope = rope is not None and getattr(m, "rope_mixed", False)
        z = p0
        taps = []
        last = max(self.out_indices)
        for i, blk in enumerate(m.blocks[: last + 1]):
            kwargs: dict[str, Any] = {"z": z, "hw": hw, "num_prefix_tokens": npt}
            if self.family.name == "eva":
                kwargs["rope"] = rope[i] if per_block_rope else rope
            x = self._block(blk, x, **kwargs)
            z = x[:, npt:]  # this block's patch tokens are the next block's internal prompt
            if i in self.out_indices:
                taps.append((i, z))
        grid = {i: t.transpose(1, 2).reshape(b, c, *hw) for i, t in taps}
        return [grid[i] for i in self.out_indices]

    def _forward_hierarchical(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """Swin: z is the stage input, fixed within a stage (P0 alone in stage 0)."""
        m = self.model
        x = m.patch_embed(vis)  # (B, h, w, C0)
        b, h, w, c = x.shape
        p0 = self._prompt(x.reshape(b, -1, c), ir, (h, w))
        if p0 is not None:
            x = x + p0.reshape(x.shape)
        outs = {}
        last = max(self.out_indices)
        for s, stage in enumerate(m.layers[: last + 1]):
            x = stage.downsample(x)
            b, h, w, c = x.shape
            t = x.reshape(b, h * w, c)
            z = p0 if s == 0 else t
            for blk in stage.blocks:
                t = self._block(blk, t, z=z, hw=(h, w)) if self.has_adapters else self._plain_swin(blk, t, (h, w))
            x = t.reshape(b, h, w, c)
            if s in self.out_indices:
                outs[s] = x.permute(0, 3, 1, 2).contiguous()
        return [outs[s] for s in self.out_indices]

    def _plain_swin(self, blk: nn.Module, t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, c = t.shape
        return self._block(blk, t.reshape(b, *hw, c)).reshape(b, n, c)
