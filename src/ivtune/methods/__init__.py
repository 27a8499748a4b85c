"""Training methods, one module each (docs/METHOD.md sections 6 and 10); importing this package registers them.

``METHODS`` maps a name to its :class:`Method`; :func:`method_config` builds a method's config from a dict.
"""

from . import adaptformer, dual_branch, frozen, full, iv_tuning, lora, vis_only_full, vpt  # noqa: F401 (registers)
from .adaptformer import AdaptFormerConfig
from .base import (
    ADAPTER_INITS,
    METHODS,
    EmptyConfig,
    IREntryConfig,
    Method,
    MethodConfig,
    get_method,
    method_config,
    register_method,
)
from .frozen import FrozenConfig
from .iv_tuning import IVTuningConfig
from .lora import LoRAConfig
from .vpt import VPTConfig

__all__ = [
    "METHODS", "Method", "register_method", "get_method", "method_config", "ADAPTER_INITS",
    "MethodConfig", "EmptyConfig", "IREntryConfig", "IVTuningConfig", "FrozenConfig", "VPTConfig",
    "AdaptFormerConfig", "LoRAConfig",
]
