"""Adapter injection into timm blocks: residual recipes per exact block class and the AdaptedBlock wrapper."""
