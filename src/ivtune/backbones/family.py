"""``Family``: everything ivtune knows about one timm model family (docs/METHOD.md section 4).

A family object holds the facts (exact timm class, its module, the timm kwargs ivtune needs), the residual recipes
of its blocks keyed by exact block class, and the forward loop that runs the timm modules with the IV-tuning input
side. :class:`~ivtune.backbones.base.IVBackbone` stays generic and asks its family. Each family has its own module
(``vit.py``, ``eva.py``, ``swin.py``); ViT and EVA share the columnar loop of ``columnar.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..inject.recipes import Recipe, ResidualFn
from ..modules.prompt import IRPatchEmbed


class BlockHost(Protocol):
    """What a family's forward loop reads from the backbone that runs it (:class:`~ivtune.backbones.base.IVBackbone`,
    which sits above the families and passes itself in): the wrapped timm model, the taps, and the three steps the
    loop interleaves with the timm modules. Naming it here keeps the families below the backbone."""

    model: nn.Module
    out_indices: list[int]
    num_prefix_tokens: int
    has_adapters: bool

    def input_prompt(self, vis_tokens: torch.Tensor, ir: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
        ...

    def prepare_blocks(self, blocks: Sequence[nn.Module], z: torch.Tensor | None = None,
                       hw: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        ...

    def run_block(self, blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        ...


class Geometry(NamedTuple):
    """What the backbone returns: channels and stride per output, and the parameter-free pyramid (or None)."""

    channels: list[int]
    strides: list[int]
    pyramid: nn.Module | None


@dataclass(frozen=True)
class Family(ABC):
    """Facts, block recipes and forward loop of one timm model family.

    Attributes:
        name: short family name used in configs and messages.
        model_cls: the exact timm model class (a subclass may restructure the forward: it must not match silently).
        timm_module: the module whose entrypoints build it (checked before building anything).
        default_kwargs: timm kwargs ivtune needs (dynamic / non-square input sizes); the caller may override them.
        recipes: the residual recipe of every supported block class, keyed by exact class.
        hierarchical: Swin-style stages (True) or a columnar model with a pseudo-pyramid (False). A fact for
            callers (heads default their per-level LayerNorm on it); the backbone itself never branches on it.
    """

    name: str
    model_cls: type[nn.Module]
    timm_module: str
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    recipes: Mapping[type[nn.Module], Recipe] = field(default_factory=dict)
    hierarchical: ClassVar[bool] = False

    @classmethod
    def of(cls, name: str, model_cls: type[nn.Module], block_cls: type[nn.Module], attn: ResidualFn, mlp: ResidualFn,
           **default_kwargs: Any) -> Family:
        """The family of one timm model class whose blocks are all ``block_cls``: the timm module is the class's
        own, and the block recipe carries the family's name (so neither can drift from the class or the name)."""
        return cls(name, model_cls, model_cls.__module__, default_kwargs, {block_cls: Recipe(name, attn, mlp)})

    @abstractmethod
    def stage_blocks(self, model: nn.Module) -> list[tuple[str, nn.Sequential]]:
        """(path, container) of every block container of ``model``, in forward order."""

    @abstractmethod
    def check_out_indices(self, model: nn.Module, out_indices: Sequence[int] | None) -> list[int]:
        """Validate ``out_indices`` (None: the family's default) and return them non-negative."""

    @abstractmethod
    def output_geometry(self, model: nn.Module, out_indices: list[int]) -> Geometry:
        """Channels, strides and pyramid of the backbone's outputs at ``out_indices``."""

    @abstractmethod
    def forward(self, backbone: BlockHost, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """The raw NCHW taps at ``backbone.out_indices``; inputs already checked, ``ir`` has 3 channels."""

    def num_prefix_tokens(self, model: nn.Module) -> int:
        """Tokens before the patch tokens (class, registers); they bypass the adapters."""
        return 0

    # ------------------------------------------------------------------ input side (defaults: a timm PatchEmbed)
    def patch_size(self, model: nn.Module) -> tuple[int, int]:
        """Stride of the visible patch embedding: the token grid is (H / p_h, W / p_w)."""
        return tuple(model.patch_embed.patch_size)

    def input_multiple(self, model: nn.Module) -> tuple[tuple[int, int], str]:
        """What the input height and width must be multiples of, and what imposes it (named in the error)."""
        ph, pw = self.patch_size(model)
        return (ph, pw), f"the patch size {ph}x{pw}"

    def ir_patch_embed(self, model: nn.Module) -> nn.Module:
        """A new IR patch embedding with the visible one's geometry, NHWC output (docs/METHOD.md section 3.8)."""
        embed = model.patch_embed
        has_norm = not isinstance(getattr(embed, "norm", nn.Identity()), nn.Identity)
        norm_eps = getattr(embed.norm, "eps", 1e-5) if has_norm else 1e-5
        return IRPatchEmbed(embed.proj.out_channels, self.patch_size(model), norm=has_norm, norm_eps=norm_eps)

    @staticmethod
    def _indices_in_range(out_indices: Sequence[int], n: int, what: str) -> list[int]:
        idx = [int(i) for i in out_indices]
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise UnsupportedModelError(
                f"out_indices {idx} has {bad} outside the model's {n} {what}s (valid: 0..{n - 1} or -{n}..-1)."
            )
        return [i % n for i in idx]


class StagedFamily(Family):
    """A family of stages over a shrinking NHWC grid (Swin, Hiera): one output per stage end.

    Both take the NHWC patch embedding as the stem: ``P0`` comes from its tokens and is added to it before stage 0.
    """

    hierarchical: ClassVar[bool] = True

    @abstractmethod
    def num_stages(self, model: nn.Module) -> int:
        """How many stages ``model`` has (the valid ``out_indices`` are ``0 .. num_stages - 1``)."""

    def check_out_indices(self, model: nn.Module, out_indices: Sequence[int] | None) -> list[int]:
        n = self.num_stages(model)
        return list(range(n)) if out_indices is None else self._indices_in_range(out_indices, n, "stage")

    @staticmethod
    def prompted_stem(backbone: BlockHost, vis: torch.Tensor, ir: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The visible NHWC patch grid (B, h, w, C0) with ``P0`` added, and ``P0`` (B, h*w, C0) (None: visible-only)."""
        x = backbone.model.patch_embed(vis)  # (B, h, w, C0)
        b, h, w, c = x.shape
        p0 = backbone.input_prompt(x.reshape(b, -1, c), ir, (h, w))
        if p0 is not None:
            x = x + p0.reshape(x.shape)
        return x, p0
