"""Does ``ivtune score det`` give the published KAIST miss rates on the published detection files? (issue 12)

Scores every result file in FOLDER (``*_result.txt`` / ``*_result.json``, the names of the community's
``evaluation_script/state_of_arts``; the method is the name before the first ``_``, as MLPD's
``evaluation_script.py`` reads it) against FOLDER/KAIST_annotation.json with the ``ivtune score det ... --json``
command, once with the exact reference FPPI (the default, Dollár's toolbox) and once with ``--fppi-decimals 4``
(MLPD's script), and prints a markdown table: published All / Day / Night MR^-2, ivtune's, and ivtune rounded to
two decimals minus the published value. The files are not in this repository (they are the authors'); keep them
outside it. The table holds only numbers, file names, sizes and sha256 digests.

    python benchmarks/kaist_published.py /tmp/kaist_published
    python benchmarks/kaist_published.py /tmp/kaist_published --out benchmarks/results/kaist_published_check.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Published MR^-2 (percent; All, Day, Night) for the result files the community distributes, keyed by the method
# name of the file (the name before the first "_"). Source: the MLPD README's results table (sejong-rcv/
# MLPD-Multi-Label-Pedestrian-Detection, commit 23833c2367f92d65565e63c6817e2883fc69c6fb); MLPD is its VGG16 model,
# whose result file is MLPD/det-test-all.txt (= evaluation_script/state_of_arts/MLPD_result.txt).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "MLPD": (7.58, 7.95, 6.95),
    "MBNet": (8.13, 8.28, 7.86),
    "MSDS-RCNN": (11.34, 10.53, 12.94),
    "ARCNN": (9.34, 9.94, 8.38),
    "CIAN": (14.12, 14.77, 11.13),
}
SUBSETS = ("all", "day", "night")
MODES = {"exact": [], "4 decimals": ["--fppi-decimals", "4"]}


def digest(path: Path) -> str:
    """``NAME (N bytes, sha256 HEX)``: which file was scored, without its content."""
    data = path.read_bytes()
    return f"`{path.name}` ({len(data)} bytes, sha256 `{hashlib.sha256(data).hexdigest()}`)"


def score(ivtune: str, annotation: Path, result: Path, extra: list[str]) -> dict[str, float]:
    """MR^-2 per subset from ``ivtune score det ANNOTATION RESULT --json``; its report files go to a temp folder."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [ivtune, "score", "det", str(annotation), str(result), "--json", "--out", out, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)["miss_rate"]


def fmt(values: tuple[float, ...] | None, digits: int = 2) -> list[str]:
    return [f"{v:.{digits}f}" for v in values] if values else ["-"] * len(SUBSETS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="KAIST_annotation.json and the *_result.txt / .json files")
    parser.add_argument("--annotation", default="KAIST_annotation.json", help="annotation file name in FOLDER")
    parser.add_argument("--ivtune", default=str(Path(sys.executable).with_name("ivtune")),
                        help="the ivtune command (default: the one beside this Python)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()

    annotation = args.folder / args.annotation
    results = sorted(p for p in args.folder.iterdir() if p.name.endswith(("_result.txt", "_result.json")))
    if not annotation.is_file() or not results:
        raise SystemExit(f"{args.folder}: needs {args.annotation} and at least one *_result.txt / *_result.json")

    lines = ["# ivtune score det vs. published KAIST MR^-2 (reasonable setting, percent)", "",
             f"Ground truth: {digest(annotation)}.", "",
             "| method | result file | FPPI points | published all / day / night | ivtune all / day / night | "
             "ivtune (2 dp) - published | match |",
             "|---|---|---|---|---|---|---|"]
    start = time.perf_counter()
    for result in results:
        method = result.name.split("_")[0]
        published = PUBLISHED.get(method)
        for mode, extra in MODES.items():
            mr = score(args.ivtune, annotation, result, extra)
            ours = tuple(mr[s] for s in SUBSETS)
            if published:
                diff = tuple(round(o, 2) - p for o, p in zip(ours, published, strict=True))
                match = "yes" if all(abs(d) < 5e-3 for d in diff) else "no"
            else:
                diff, match = None, "no published value"
            lines.append(f"| {method} | {digest(result)} | {mode} | {' / '.join(fmt(published))} | "
                         f"{' / '.join(fmt(ours, 4))} | {' / '.join(f'{d:+.2f}' for d in diff) if diff else '-'} | "
                         f"{match} |")
    lines += ["", f"Published: the MLPD README's results table (commit 23833c2367f92d65565e63c6817e2883fc69c6fb). "
              f"Scored with `{Path(args.ivtune).name} score det ANNOTATION RESULT --json [--fppi-decimals 4]`, "
              f"{len(results) * len(MODES)} runs in {time.perf_counter() - start:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
