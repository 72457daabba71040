"""The plumbing of .ci/gpu_check.sh that runs without a GPU: the test deadline
(tests/conftest.py) and the summary table (scripts/gpu_check_summary.py).

The script itself runs end to end, with its GPU steps replaced, as
``.ci/gpu_check.sh --dry-run`` in ``.ci/cuda_build.sh``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pau import bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_summary():
    spec = importlib.util.spec_from_file_location(
        "gpu_check_summary", ROOT / "scripts" / "gpu_check_summary.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pytest(report: Path, selected: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *selected,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tests_past_the_deadline_are_skipped_and_reported(tmp_path, gpu_summary):
    report = tmp_path / "tests.xml"
    selected = [
        "tests/test_bench.py::test_unknown_operator_is_an_error",
        "tests/test_bench.py::test_summary_reports_rpau_overhead_and_targets",
    ]
    env = {**os.environ, "PAU_TEST_DEADLINE": "1"}  # 1970: already past
    run_pytest(report, selected, env)
    assert gpu_summary.tests_result(tmp_path) == (
        "0 passed, 0 failed, 0 errors, 2 skipped (2 of the skips: time budget spent)"
    )
    # Without a deadline the same tests run.
    env.pop("PAU_TEST_DEADLINE")
    run_pytest(report, selected, env)
    assert gpu_summary.tests_result(tmp_path).startswith("2 passed, 0 failed")


def write_reports(out: Path) -> None:
    (out / "steps.tsv").write_text(
        "step\tstatus\tseconds\nbuild\tok\t91\ntests\tfailed (1)\t130\n"
        "memcheck\tok\t40\nracecheck\ttimeout\t50\nbench\tok\t118\n"
    )
    (out / "build.log").write_text("-- pau: CUDA kernels enabled for architectures 90-real (x)\n")
    (out / "tests.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="a" name="test_ok"/>'
        '<testcase classname="a" name="test_bad"><failure message="boom"/></testcase>'
        '<testcase classname="a" name="test_late"><skipped message="time budget spent"/></testcase>'
        '<testcase classname="a" name="test_nogpu"><skipped message="no CUDA device"/></testcase>'
        "</testsuite></testsuites>"
    )
    (out / "memcheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    (out / "racecheck.log").write_text("========= RACECHECK SUMMARY: 2 hazards displayed\n")
    shape = bench.nchw_shape(2**24)

    def case(impl: str, direction: str, ms: float) -> dict:
        c = bench.Case("pau", impl, direction, "float32", 2**24, "1", shape, ms, ms / 0.1)
        return dataclasses.asdict(c)

    cases = [
        case("relu", "forward", 0.1),
        case("copy", "forward", 0.1),
        {**case("pau", "forward", 0.12), "fraction_of_copy": 0.1 / 0.12},
        case("relu", "forward_backward", 0.3),
        case("reference_compiled", "forward_backward", 1.2),
        {**case("pau", "forward_backward", 0.3), "fraction_of_copy": 0.25 / 0.3},
    ]
    data = {"device": "NVIDIA H200", "device_type": "cuda", "cases": cases}
    (out / "cuda-nvidia-h200.json").write_text(json.dumps(data))


def test_summary_has_a_row_per_step_and_the_benchmark_targets(tmp_path, gpu_summary):
    write_reports(tmp_path)
    lines = gpu_summary.summary(tmp_path)
    rows = {line.split()[0]: line for line in lines[1:6]}
    assert "CUDA kernels enabled for architectures 90-real" in rows["build"]
    assert "failed (1)" in rows["tests"]
    assert "1 passed, 1 failed, 0 errors, 2 skipped (1 of the skips" in rows["tests"]
    assert "first failures: test_bad" in rows["tests"]
    assert rows["memcheck"].endswith("0 errors")
    assert "timeout" in rows["racecheck"] and rows["racecheck"].endswith("2 hazards displayed")
    assert "6 cases on NVIDIA H200 in cuda-nvidia-h200.json" in rows["bench"]
    text = "\n".join(lines)
    # 0.1 / 0.12 of the copy's bandwidth misses 90%; 0.25 / 0.3 of it meets 80%.
    assert "copy-bw 83.3% [at least 90%: MISSED]" in text
    assert "copy-bw 83.3% [at least 80%: met]" in text
    assert "[reference_compiled/pau at least 3.0: met]" in text


def test_summary_of_an_empty_folder_says_what_is_missing(tmp_path, gpu_summary):
    text = "\n".join(gpu_summary.summary(tmp_path))
    assert "no steps.tsv" in text
    assert gpu_summary.tests_result(tmp_path).startswith("no test report")
    assert gpu_summary.bench_result(tmp_path) == ("no benchmark JSON", [])
    assert gpu_summary.sanitizer_result(tmp_path / "memcheck.log").startswith("no sanitizer")
