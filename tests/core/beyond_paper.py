"""Tiny timm models of the families beyond the paper (no downloads): SAM 2 Hiera, Swin V2, DINOv3, EVA-02 at
patch 16, and the exact-count formula of docs/METHOD.md section 7 for a hierarchical backbone."""

from __future__ import annotations

import torch
from torch import nn

# name -> (timm name, timm kwargs, sizes); the first size is square, the second not, the third exercises padding
# (Hiera: a window that does not divide the grid, 12x20 tokens at stage 1 with window 6; Swin V2: 28x36 tokens with
# window 8 and odd grids at the merges)
TINY_BEYOND = {
    "sam2_hiera": (
        "sam2_hiera_tiny",
        dict(embed_dim=32, num_heads=1, stages=(1, 2, 2, 1), global_att_blocks=(4,), window_spec=(8, 6, 4, 2)),
        [(64, 64), (64, 96), (96, 160)],
    ),
    "swinv2": (
        "swinv2_tiny_window8_256",
        dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), img_size=(96, 128)),
        [(96, 96), (96, 128), (112, 144)],
    ),
    "dinov3": ("vit_small_patch16_dinov3", dict(depth=2, embed_dim=64, num_heads=2), [(64, 64), (64, 96), (80, 48)]),
    "eva02_p16": (
        "eva02_tiny_patch14_224",
        dict(depth=2, embed_dim=64, num_heads=2, patch_size=16),
        [(64, 64), (64, 96), (80, 48)],
    ),
}


def hierarchical_trainable(stages: list[tuple[int, int]], c0: int, ir_embed_per_channel: int) -> int:
    """IV-tuning's trainable count on a stage-wise backbone (docs/METHOD.md section 7).

    ``sum_s n_s (312 C_s + 17,360)`` for HA1 + HA2 + IPA1 + IPA2 in every block at its stage width, plus the IR patch
    embedding (``ir_embed_per_channel * C0``), the EMPG (``25 C0 + 196``) and the shared prompt LN (``2 C0``).

    Args:
        stages: (width C_s, blocks n_s) per stage.
        c0: the stage-0 width (the patch embedding's).
        ir_embed_per_channel: Swin 51 (conv 4x4 + LN), Hiera 148 (conv 7x7 with bias).
    """
    blocks = sum(n * (312 * c + 17_360) for c, n in stages)
    return blocks + ir_embed_per_channel * c0 + 25 * c0 + 196 + 2 * c0


def stage_widths(c0: int, depths: tuple[int, ...]) -> list[tuple[int, int]]:
    """(C0 * 2^s, n_s) per stage: Swin's and Hiera's doubling widths."""
    return [(c0 * 2**s, n) for s, n in enumerate(depths)]


def perturb_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every LayerNorm a random affine (weight ~ N(1, 0.2), bias ~ N(0, 0.2)), in place; returns ``model``.

    timm initialises Swin V2's post-norms to zero (``_init_respostnorm``): at random init every attention and MLP
    branch adds exactly nothing, and a comparison with timm could not tell a wrong recipe from a right one.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model
