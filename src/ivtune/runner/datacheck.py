"""``ivtune data check``: scan every split a config names and report all problems at once."""

from __future__ import annotations

from collections.abc import Callable

from ..config import load_config


def check_config(config: str, overrides: list[str], splits: list[str] | None, echo: Callable[[str], None]) -> bool:
    """Scan the dataset of ``config``; returns True when no problem was found."""
    from ..tasks import get_task

    cfg = load_config(config, overrides)
    build_dataset = get_task(cfg.task).build_dataset
    d = cfg.data
    names = splits or list(dict.fromkeys(s for s in (d.train_split, d.val_split, d.test_split) if s))
    ok = True
    for split in names:
        ds = build_dataset(cfg, split, train=False, strict=False)
        report = ds.scan()
        echo(f"== {d.dataset} split {split!r} ({d.root or 'generated'}) ==")
        echo(report.format())
        ok = ok and report.ok
    echo("no problems found" if ok else "problems found: fix the files listed above")
    return ok
