"""pytest's hooks and the fixtures every test gets; what tests import lives in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# pytest -n 2 runs two workers on the 2-core CI machine: one intra-op thread each avoids oversubscription
# (shared machines ran some tests ~30x slower with torch's default thread count); set here, before xdist starts its
# workers, it also reaches the subprocesses tests start (CLI, DDP ranks)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None and config.getoption("numprocesses", default=None):
        return  # the xdist controller runs no test: importing torch and ivtune here would delay the workers ~8 s
    import torch

    import ivtune.tasks  # noqa: F401  (registers the seg, sod and det tasks and their config sections)

    torch.set_num_threads(1)


# `make test` hands whole files to its two xdist workers in collection order (--dist loadfile): the files that take
# longest on 2 cores go first, so the workers finish together instead of one waiting out a long file at the end
LONGEST_FIRST = ("engine/test_export.py", "seg/test_seg_engine.py", "det/test_det_engine.py", "core/test_compile.py",
                 "engine/test_robustness.py", "engine/test_demo.py", "det/test_det_rtdetr_engine.py",
                 "engine/test_analyze.py", "engine/test_run_integrity.py", "sod/test_sod_engine.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def file_rank(item: pytest.Item) -> int:
        path = Path(item.path)
        return rank.get(path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else "", len(rank))

    items.sort(key=file_rank)  # stable: the order within a file, and of the other files, stays


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
