"""ivtune: IV-tuning (arXiv 2412.16654) on frozen timm backbones for infrared + visible tasks.

Public API: :func:`build_backbone`, :func:`count_parameters`, :func:`save_adapter`, :func:`load_adapter`.
"""

from .backbones.base import IVBackbone
from .backbones.factory import build_backbone
from .checkpoint import load_adapter, save_adapter
from .methods import METHODS
from .params import count_parameters
from .version import __version__

__all__ = ["build_backbone", "count_parameters", "save_adapter", "load_adapter", "IVBackbone", "METHODS",
           "__version__"]
