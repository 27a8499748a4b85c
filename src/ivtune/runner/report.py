"""Adding a section to an evaluation folder's report after the task has written it.

Each task writes ``metrics.json`` / ``metrics.md`` its own way (:meth:`ivtune.engine.task.Task.write_report`); what
the runner adds on top (the robustness table, the weights the numbers come from) goes in through
:func:`extend_report`, so every addition treats the two files the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write


def extend_report(out_dir: str | Path, key: str, value: Any, markdown: str) -> tuple[Path, Path]:
    """Put ``value`` under ``key`` in ``out_dir/metrics.json`` and append the ``markdown`` paragraph to
    ``metrics.md``, each written atomically. A task report that is not a JSON object (a bare list of rows) is kept
    under ``results``; either file is created when the task wrote none. Returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    payload = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    if not isinstance(payload, dict):
        payload = {"results": payload}
    payload[key] = value
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8"))
    md = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
    text = (md.rstrip("\n") + "\n\n" if md else "") + markdown.rstrip("\n") + "\n"
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return json_path, md_path
