"""The trainable building blocks of IV-tuning (docs/METHOD.md section 3)."""

from .adapters import HybridAdapter, InsertionPoint, InternalPromptAdapter
from .ops import SFT, HybridOperation, SimAM, grid_to_tokens, tokens_to_grid
from .prompt import EMPG, IRPatchEmbed, PromptStem

__all__ = [
    "SimAM", "HybridOperation", "SFT", "tokens_to_grid", "grid_to_tokens",
    "HybridAdapter", "InternalPromptAdapter", "InsertionPoint",
    "EMPG", "PromptStem", "IRPatchEmbed",
]
