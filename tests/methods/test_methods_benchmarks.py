"""The benchmark scripts' smoke paths run end to end (tiny models, seconds) and write their reports.

Each starts a Python process that imports torch, timm and Lightning (~10 s on 2 cores): ``slow`` (`make test-all`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_efficiency_smoke(tmp_path):
    # four methods cover every kind of row (the floor, ours, the baseline, one a family does not support); the
    # methods themselves are built and stepped in tests/methods
    run("efficiency.py", "--quick", "--smoke", "--out", str(tmp_path), "--methods", "plain", "iv-tuning",
        "dual-branch", "vpt")
    (js,) = tmp_path.glob("efficiency_smoke_*.json")
    data = json.loads(js.read_text())
    assert {"cpu", "cores", "torch"} <= set(data["machine"])
    methods = {(r["backbone"], r["method"]) for r in data["rows"]}
    assert ("vit-tiny", "vpt") in methods and ("swin-tiny", "vpt") not in methods
    assert {(b, m) for b in ("swin-tiny", "vit-tiny") for m in ("plain", "iv-tuning", "dual-branch")} <= methods
    for r in data["rows"]:
        assert r["infer_ms"] > 0
        assert r["method"] == "plain" or r["train_ms"] > 0
    md = js.with_suffix(".md").read_text()
    assert "| vit-tiny | dual-branch |" in md and "vs plain" in md


def test_synthetic_smoke(tmp_path):
    run("synthetic.py", "--quick", "--smoke", "--out", str(tmp_path))
    report = json.loads((tmp_path / "synthetic.json").read_text())
    summary = report["summary"]
    assert {"cpu", "cores", "torch"} <= set(report["machine"])
    assert set(summary) == {"iv-tuning", "lora", "dual-branch"}
    assert all(0.0 <= summary[m][s]["mean"] <= 100.0 for m in summary for s in ("all", "day", "night"))
    assert (tmp_path / "synthetic_miou.png").stat().st_size > 0
    assert "| iv-tuning |" in (tmp_path / "synthetic.md").read_text()
