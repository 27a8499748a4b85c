"""``adaptformer``: AdaptFormer (Chen et al., NeurIPS 2022), a bottleneck MLP beside every block's MLP, plus the
IV-tuning IR entry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ..backbones.base import BlockWrapperFactory
from ..inject.adaptformer import AdaptFormerBlock
from .base import IREntryConfig, Method, ir_entry_build, register_method, train_added_modules


@dataclass(frozen=True, kw_only=True)
class AdaptFormerConfig(IREntryConfig):
    """Hyperparameters of the AdaptFormer baseline (defaults: the paper's for ViT-B).

    Attributes:
        bottleneck: width of the parallel MLP (64).
        scale: factor on its output, > 0 (0.1).
        empg_hidden, init: see :class:`~ivtune.methods.base.IREntryConfig`.
    """

    bottleneck: int = 64
    scale: float = 0.1

    def _check(self) -> None:
        super()._check()
        self._integer("bottleneck", 1)
        self._number("scale", 0.0, low_open=True)


def _wrapper(config: AdaptFormerConfig) -> BlockWrapperFactory:
    return partial(AdaptFormerBlock, bottleneck=config.bottleneck, scale=config.scale)


_DEFAULTS = AdaptFormerConfig()
ADAPTFORMER = register_method(Method(
    name="adaptformer",
    description=f"frozen backbone + IR patch embed and prompt stem; AdaptFormer: a bottleneck-{_DEFAULTS.bottleneck} "
    f"MLP beside every block's MLP, scale {_DEFAULTS.scale:g}",
    config_cls=AdaptFormerConfig,
    build=ir_entry_build(_wrapper),
    configure=train_added_modules,
))
