"""What every benchmark report states about the machine it ran on (one definition for all the scripts).

The scripts run as ``python benchmarks/<name>.py``, so this directory is on ``sys.path`` and they import it as
``from machine_info import ...``.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def machine(device: str = "auto") -> dict[str, Any]:
    """CPU model, usable cores, torch threads / version and, when ``device`` is a GPU, its name and CUDA version.

    ``device``: ``auto`` (the GPU when there is one), ``cpu`` (a CPU run on a GPU machine names no GPU) or ``cuda...``.
    """
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    use_gpu = torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))
    gpu = torch.cuda.get_device_name(torch.device("cuda" if device == "auto" else device)) if use_gpu else None
    return {"cpu": cpu, "cores": cores, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.version.cuda if gpu else None, "gpu": gpu, "python": platform.python_version()}


def machine_tag(m: dict[str, Any]) -> str:
    """A file-name-safe tag: the GPU or ``<cpu>-<cores>c``, the torch (and CUDA) version."""
    dev = m["gpu"] or f"{m['cpu']}-{m['cores']}c"
    tag = f"{dev}_torch{m['torch'].split('+')[0]}" + (f"_cuda{m['cuda']}" if m["cuda"] else "")
    return re.sub(r"[^A-Za-z0-9.]+", "-", tag).strip("-")


def describe(m: dict[str, Any]) -> str:
    """One line for a markdown report."""
    device = f"{m['gpu']} (CUDA {m['cuda']}), host " if m["gpu"] else ""
    return (f"{device}{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch "
            f"{m['torch'].split('+')[0]}, Python {m['python']}")
