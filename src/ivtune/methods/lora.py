"""``lora``: LoRA (Hu et al., ICLR 2022) on every attention's q/k/v and output projection, plus the IV-tuning IR
entry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ..backbones.base import BlockWrapperFactory
from ..inject.lora import LoRABlock
from .base import IREntryConfig, Method, ir_entry_build, register_method, train_added_modules


@dataclass(frozen=True, kw_only=True)
class LoRAConfig(IREntryConfig):
    """Hyperparameters of the LoRA baseline (defaults: the paper's for ViT-B).

    Attributes:
        rank: rank ``r`` of every update ``B A`` (8).
        alpha: the update is scaled by ``alpha / rank``, > 0 (8.0: scale 1 at the default rank).
        empg_hidden, init: see :class:`~ivtune.methods.base.IREntryConfig`.
    """

    rank: int = 8
    alpha: float = 8.0

    def _check(self) -> None:
        super()._check()
        self._integer("rank", 1)
        self._number("alpha", 0.0, low_open=True)


def _wrapper(config: LoRAConfig) -> BlockWrapperFactory:
    return partial(LoRABlock, rank=config.rank, alpha=config.alpha)


_DEFAULTS = LoRAConfig()
LORA = register_method(Method(
    name="lora",
    description=f"frozen backbone + IR patch embed and prompt stem; LoRA rank {_DEFAULTS.rank}, alpha "
    f"{_DEFAULTS.alpha:g} on every attention's qkv and output projection",
    config_cls=LoRAConfig,
    build=ir_entry_build(_wrapper),
    configure=train_added_modules,
))
