"""Learning-rate schedules by optimiser step and the AdamW parameter groups (docs/METHOD.md section 9.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import OptimConfig
from ..errors import ConfigError


def lr_lambda(cfg: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimiser step ``step``: linear warm-up, then poly / step / constant."""

    def fn(step: int) -> float:
        if step < cfg.warmup_iters:
            return cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * step / max(1, cfg.warmup_iters)
        if cfg.schedule == "poly":
            return max(0.0, 1.0 - step / max(1, max_steps)) ** cfg.poly_power
        if cfg.schedule == "step":
            return cfg.step_gamma ** sum(step >= m for m in cfg.step_milestones)
        return 1.0

    return fn


def param_groups(backbone: nn.Module, head: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Trainable backbone parameters at ``lr``, head parameters at ``lr * head_lr_mult``; no weight decay on
    biases and other 1-D tensors (norm weights, SFT gamma/beta), as mmseg's SegFormer recipe does for norms."""
    groups = []
    for module, mult in ((backbone, 1.0), (head, cfg.head_lr_mult)):
        decay, no_decay = [], []
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        for params, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "lr": cfg.lr * mult, "weight_decay": wd})
    return groups


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adam":  # the SOD recipe: Adam without weight decay
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"optim.name must be one of adamw, adam; got {cfg.name!r}.")
