"""bench/lm_memory.py in its smoke mode, on the tiny Llama: every side trains two steps in its
own subprocess and the table lands in the given file. No claims; this keeps the harness working
and checks that the Trainer side trains exactly as many parameters as tailorkit's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_causal_lm import qa_csv  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_the_memory_table(tiny_llama, qa_csv, tmp_path):  # noqa: F811
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Causal-LM memory (issue #20)\n\nearlier tables\n\n## Other\n\nrest\n")
    sides = "tailorkit-ckpt,trainer,trainer-ckpt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "lm_memory.py"), "--model", str(tiny_llama), "--data",
         str(qa_csv), "--max-length", "64", "--sides", sides, "--smoke", "--results", str(results)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = results.read_text()
    assert "SMOKE (no claims)" in text and "--smoke" in text
    # into the section, after its earlier tables, before the next section
    assert text.index("earlier tables") < text.index("#### causal-LM SFT memory") < text.index("## Other")
    assert text.endswith("## Other\n\nrest\n")
    rows = re.findall(r"^\| (\S+) \| (?:tcmalloc|jemalloc|system) \| (\d+) \| ([\d.]+)× \| [\d.]+ \| [\d.]+× "
                      r"\| (\d+\.\d{4}) \| ([\d,]+) \|$",
                      text, re.M)
    assert [r[0] for r in rows] == sides.split(",")
    assert len({r[4] for r in rows}) == 1  # the same trainable parameter count on every side
    assert all(float(r[3]) > 0 for r in rows)
