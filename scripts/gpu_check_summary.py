"""The short table that ends ``.ci/gpu_check.sh``: one line per step, then the benchmark summary.

``python scripts/gpu_check_summary.py OUT`` reads what the steps left in OUT:
``steps.tsv`` (step, status, seconds), ``build.log``, ``tests.xml`` (JUnit),
``memcheck.log``, ``racecheck.log`` and the benchmark JSON, and prints the table.
A missing or unreadable report is said in its row, never an error: the table
must come out whatever the steps did.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pau import bench

# The reason tests/conftest.py gives tests it skips at PAU_TEST_DEADLINE.
DEADLINE_REASON = "time budget"


def build_result(out: Path) -> str:
    text = _read(out / "build.log")
    match = re.search(r"pau: CUDA kernels (enabled for architectures \S+|disabled \([^)]*\))", text)
    return f"CUDA kernels {match.group(1)}" if match else "no configure line in build.log"


def tests_result(out: Path) -> str:
    try:
        root = ET.parse(out / "tests.xml").getroot()
    except (OSError, ET.ParseError) as error:
        return f"no test report ({type(error).__name__})"
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    for_time = 0
    failed = []
    for case in root.iter("testcase"):
        outcomes = {child.tag: child for child in case}
        if "failure" in outcomes or "error" in outcomes:
            counts["failed" if "failure" in outcomes else "errors"] += 1
            failed.append(case.get("name", "?"))
        elif "skipped" in outcomes:
            counts["skipped"] += 1
            for_time += DEADLINE_REASON in (outcomes["skipped"].get("message") or "")
        else:
            counts["passed"] += 1
    text = ", ".join(f"{n} {k}" for k, n in counts.items())
    text += f" ({for_time} of the skips: time budget spent)"
    if failed:
        text += "; first failures: " + ", ".join(failed[:3])
    return text


def sanitizer_result(log: Path) -> str:
    text = _read(log)
    if "skipped: dry run" in text:
        return "skipped (dry run)"
    summary = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: ([^\n]*)", text)
    return summary[-1].strip() if summary else "no sanitizer summary in the log"


def bench_result(out: Path) -> tuple[str, list[str]]:
    """The row's text and the benchmark's summary lines (targets met or MISSED)."""
    for path in sorted(out.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            cases = [bench.Case(**{**c, "shape": tuple(c["shape"])}) for c in data["cases"]]
        except (ValueError, KeyError, TypeError):
            continue
        row = f"{len(cases)} cases on {data.get('device', '?')} in {path.name}"
        return row, bench.summary(cases, data.get("device_type"))
    return "no benchmark JSON", []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def summary(out: Path) -> list[str]:
    """The table for the results folder ``out``."""
    bench_row, bench_lines = bench_result(out)
    results = {
        "build": build_result(out),
        "tests": tests_result(out),
        "memcheck": sanitizer_result(out / "memcheck.log"),
        "racecheck": sanitizer_result(out / "racecheck.log"),
        "bench": bench_row,
    }
    try:
        with open(out / "steps.tsv", newline="") as f:
            steps = list(csv.DictReader(f, delimiter="\t"))
    except OSError:
        steps = []
    lines = [f"{'step':10s} {'status':11s} {'seconds':>7s}  result"]
    for row in steps:
        name, status, seconds = (row.get(k, "?") for k in ("step", "status", "seconds"))
        lines.append(f"{name:10s} {status:11s} {seconds:>7s}  {results.get(name, '')}")
    if not steps:
        lines.append("(no steps.tsv: the script stopped before its first step ended)")
    if bench_lines:
        lines += ["", "benchmark: ratios and targets"] + ["  " + line for line in bench_lines]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the results folder of .ci/gpu_check.sh")
    args = parser.parse_args(argv)
    print("\n".join(summary(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
