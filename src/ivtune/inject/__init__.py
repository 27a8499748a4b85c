"""Adapter injection into timm blocks: the generic block wrappers (IV-tuning's and the PETL baselines').

The per-class residual recipes they run live with their backbone family in ``ivtune.backbones``.
"""
