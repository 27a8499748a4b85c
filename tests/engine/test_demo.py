"""The demo pipeline end to end at toy size (the real demo, `make demo`, trains for minutes)."""

from __future__ import annotations

import json

from ivtune.runner.demo import run_demo


def test_demo_smoke(tmp_path, monkeypatch):
    monkeypatch.delenv("IVTUNE_WEIGHTS", raising=False)
    lines = []
    report = run_demo(tmp_path / "demo", steps=2, num_train=8, num_test=6, try_hub=False, echo=lines.append)
    text = report.read_text()
    assert "random-init" in text  # says which backbone it used
    assert "| IV-tuning |" in text and "| visible-only (full fine-tuning) |" in text
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary["results"]) == {"iv-tuning", "vis-only-full"}
    assert {"day", "night"} <= set(summary["results"]["iv-tuning"])
    for png in ("examples.png", "per_class_iou_night.png", "training_curves_iv-tuning.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    # a second call reuses the finished runs instead of training again
    lines.clear()
    run_demo(tmp_path / "demo", steps=2, num_train=8, num_test=6, try_hub=False, echo=lines.append)
    assert any("reusing" in line for line in lines)
