"""``json_safe``: metric results and reports as plain JSON values, for every file ivtune writes them to."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` with NaN as None (JSON has no NaN), numpy arrays as lists, numpy and other scalar wrappers (0-d
    tensors) as Python numbers, mapping keys as strings and tuples as lists; other values unchanged."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars, 0-d tensors
        return json_safe(value.item())
    return value
