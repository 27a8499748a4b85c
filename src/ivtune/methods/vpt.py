"""``vpt``: deep visual prompt tuning (Jia et al., ECCV 2022) in every block, plus the IV-tuning IR entry.

ViT / EVA only: Swin's window attention has no place for extra tokens (``ivtune.inject.vpt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ..backbones.base import BlockWrapperFactory
from ..inject.vpt import VPT_FAMILIES, VPTBlock
from .base import IREntryConfig, Method, ir_entry_build, register_method, train_added_modules


@dataclass(frozen=True, kw_only=True)
class VPTConfig(IREntryConfig):
    """Hyperparameters of the deep-VPT baseline.

    Attributes:
        num_tokens: learnable prompt tokens per block (10, the paper's default for ViT-B).
        empg_hidden, init: see :class:`~ivtune.methods.base.IREntryConfig`.
    """

    num_tokens: int = 10

    def _check(self) -> None:
        super()._check()
        self._integer("num_tokens", 1)


def _wrapper(config: VPTConfig) -> BlockWrapperFactory:
    return partial(VPTBlock, num_tokens=config.num_tokens)


VPT = register_method(Method(
    name="vpt",
    description=f"frozen backbone + IR patch embed and prompt stem; deep VPT: {VPTConfig().num_tokens} learnable "
    "tokens per block, dropped after it (ViT/EVA only)",
    config_cls=VPTConfig,
    build=ir_entry_build(_wrapper),
    configure=train_added_modules,
    families=VPT_FAMILIES,
))
