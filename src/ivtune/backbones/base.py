"""``IVBackbone``: one frozen timm backbone that takes a visible + infrared pair (docs/METHOD.md section 4).

The class is generic: everything that differs between ViT, EVA and Swin (block containers, output indices and
geometry, prefix tokens, the forward loop) is asked of its :class:`~ivtune.backbones.family.Family`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputShapeError, UnsupportedModelError
from ..inject.recipes import Recipe
from ..inject.wrappers import BlockWrapper
from ..modules.prompt import PromptStem
from .families import recipe_for, supported_block_names
from .family import Family

BlockWrapperFactory = Callable[[nn.Module, Recipe, int], BlockWrapper]  # (block, recipe, dim) -> wrapper


# Regional compilation: one compiled function that runs *any* block, so that dynamo compiles each distinct block
# variant once (parameters are graph inputs) and a deeper model costs no more compile time. Separate functions for
# training and for CUDA-graph inference, because dynamo caches compiled code per function (code object).
def _call_block(blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return blk(x, **kwargs)


def _call_block_checkpointed(blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    # checkpoint inside the compiled region: dynamo turns it into recomputation of the compiled graph
    return checkpoint(blk, x, use_reentrant=False, **kwargs)


def _call_block_graphs(blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return blk(x, **kwargs)


_COMPILED: dict[tuple[str, str], Callable[..., torch.Tensor]] = {}


def _compiled(kind: str, options: dict[str, Any], key: str) -> Callable[..., torch.Tensor]:
    """The compiled block runner of ``kind`` (``train``, ``checkpoint`` or ``graphs``) for ``options`` (whose
    ``repr`` is ``key``), cached per process: a backbone keeps only its options, so it still pickles and copies."""
    if (kind, key) not in _COMPILED:
        fn = {"train": _call_block, "checkpoint": _call_block_checkpointed, "graphs": _call_block_graphs}[kind]
        opts = {**options, "mode": "reduce-overhead"} if kind == "graphs" else options
        _COMPILED[kind, key] = torch.compile(fn, **opts)
    return _COMPILED[kind, key]


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
        self.compile_options: dict[str, Any] | None = None  # set by compile(); None: eager blocks
        self.cuda_graphs = False
        self.build_config: dict[str, Any] = {}  # filled by the builder; written into adapter_config.json
        self.out_indices = family.check_out_indices(model, out_indices)
        self._check_blocks(model, family)  # validate everything before mutating the model
        if block_wrapper is not None and not ir_input:
            raise UnsupportedModelError("block wrappers need the internal prompt, which comes from the IR input")

        dim = model.patch_embed.proj.out_channels
        self.patch_size = family.patch_size(model)
        self.num_prefix_tokens = family.num_prefix_tokens(model)
        self.ir_input = ir_input
        self.ir_patch_embed = family.ir_patch_embed(model) if ir_input else None  # same geometry as the visible one
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
        norm = blk.norm2  # the width after the attention residual: Hiera's stage-entry blocks widen the stream
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

    def compile(self, *, cuda_graphs: bool = True, max_sizes: int = 4, **options: Any) -> IVBackbone:
        """Regional compilation: every block runs through ``torch.compile``, the rest of the forward stays eager.

        Dynamo compiles one graph per distinct block variant (one for all ViT / EVA blocks; Swin: per stage and
        window shift), each in train and in eval mode and per input size, so compile time does not grow with depth.
        Inside a block there is no graph break (tests/core/test_compile.py); the blocks then prepare their own
        adapter weights inside the graph instead of once per stack (the compiler fuses those small ops anyway).
        Works with bf16 autocast, gradient checkpointing (recomputation of the compiled graph) and DDP (only
        submodules are compiled, so DDP needs no compiled-optimizer support).

        Args:
            cuda_graphs: inference without gradients on a CUDA device (``eval`` / ``predict``) replays the blocks as
                CUDA graphs (``mode="reduce-overhead"``); a new input size records new graphs, so this suits
                fixed-size inference. Elsewhere (CPU, training) the blocks run compiled without graphs; on a CPU the
                first such forward says so once.
            max_sizes: input sizes to compile for ("size buckets" under multi-scale training): dynamo's recompile
                limit is raised to ``16 * max_sizes`` graphs per block runner; beyond it, new variants run eagerly.
            **options: passed to ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ``fullgraph``, ...).

        Returns:
            self (compiled in place, like ``nn.Module.compile``); every IV backbone inside it (the dual-branch
            baseline's IR branch) is compiled the same way.
        """
        import torch._dynamo

        limit = 16 * max_sizes
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        # static shapes: each stage / size is its own small graph. Dynamo's default (sizes made symbolic after the
        # first mismatch) would trace every Swin stage symbolically, ~10x slower to compile for no fewer graphs
        options = {"dynamic": False, **options}
        for m in self.modules():
            if isinstance(m, IVBackbone):
                m.compile_options = dict(options)
                m.cuda_graphs = cuda_graphs
                m._graphs_fallback_said = False
                m._compile_key = repr(sorted(options.items()))
        return self

    def _block_runner(self, x: torch.Tensor) -> Callable[..., torch.Tensor] | None:
        """The compiled runner for this block call (None: eager)."""
        if self.compile_options is None:
            return None
        if self.grad_checkpointing and torch.is_grad_enabled():
            kind = "checkpoint"
        elif self.cuda_graphs and not torch.is_grad_enabled() and x.is_cuda:
            kind = "graphs"
        else:
            kind = "train"
            if self.cuda_graphs and not torch.is_grad_enabled():
                self._say_graphs_fallback(x.device)
        return _compiled(kind, self.compile_options, self.__dict__.get("_compile_key", ""))

    def _say_graphs_fallback(self, device: torch.device) -> None:
        if not self.__dict__.get("_graphs_fallback_said", False):
            self._graphs_fallback_said = True
            warnings.warn(
                f"compile(cuda_graphs=True): CUDA graphs need a CUDA device; inference on {device.type} runs the "
                "compiled blocks without them (pass cuda_graphs=False to silence this).", UserWarning, stacklevel=5)

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
        """Input height and width must be multiples of this (the patch size; Hiera: patch stride x window)."""
        return max(self.family.input_multiple(self.model)[0])

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
        (ph, pw), what = self.family.input_multiple(self.model)
        if h % ph or w % pw:
            th, tw = -(-h // ph) * ph, -(-w // pw) * pw
            raise InputShapeError(
                f"Input {h}x{w} is not a multiple of {what} "
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
        if self.cuda_graphs and self.compile_options is not None and vis.is_cuda and not torch.is_grad_enabled():
            torch.compiler.cudagraph_mark_step_begin()  # a new forward: the previous one's graph outputs are free
        return self.family.forward(self, vis, ir)

    # ------------------------------------------------------------------ called by the family loops
    def input_prompt(self, vis_tokens: torch.Tensor, ir: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
        """``P0`` from the (B, h*w, C) visible patch tokens and the IR image; None for a visible-only backbone."""
        if not self.ir_input:
            return None
        ir_tokens = self.ir_patch_embed(ir).flatten(1, 2)
        return self.prompt_stem(vis_tokens, ir_tokens, hw)

    def prepare_blocks(
        self, blocks: Sequence[nn.Module], z: torch.Tensor | None = None, hw: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Extra :meth:`run_block` keywords for ``blocks``, which the loop then runs in this order.

        Block wrappers prepare their parameters for a whole stack at once (:meth:`BlockWrapper.prepare_group`):
        one op per parameter kind instead of several per block. ``z``: the internal prompt when it is the same for
        all of ``blocks`` (a Swin stage), so that their prompts are computed together; it is not used under
        gradient checkpointing, where each block recomputes its own prompts (their activations are not kept).
        """
        blocks = list(blocks)
        first = blocks[0] if blocks else None
        if (self.compile_options is not None or not isinstance(first, BlockWrapper)
                or any(type(b) is not type(first) for b in blocks)):
            return [{} for _ in blocks]  # compiled blocks prepare themselves, inside their graph
        if self.grad_checkpointing and torch.is_grad_enabled():
            z = None
        return type(first).prepare_group(blocks, z=z, hw=hw)

    def run_block(self, blk: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Run one (wrapped or plain) block, with gradient checkpointing when enabled."""
        if not self.has_adapters:  # the plain timm block does not take the IV-tuning arguments
            kwargs = {k: v for k, v in kwargs.items() if k not in ("z", "hw", "num_prefix_tokens")}
        runner = self._block_runner(x) if self.compile_options is not None else None
        if runner is not None:
            return runner(blk, x, **kwargs)
        if self.grad_checkpointing and torch.is_grad_enabled():
            # keyword arguments only: the authors' positional call put the position bias into the prompt slot
            return checkpoint(blk, x, use_reentrant=False, **kwargs)
        return blk(x, **kwargs)
