"""What a causal-LM training run imports (issue #20): the CLI and the run's data preparation
load no library that only other commands use (scikit-learn ~43 MB, matplotlib ~25 MB, the
serving stack), so a later module-level import cannot silently bring them back.

One fresh interpreter, since this process already imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Libraries of other commands and tasks: metrics and stratified splits of classifiers, report
# figures, `tailor serve`. scipy arrives with peft when the model loads, not before.
UNUSED_BY_CLI = {"sklearn", "matplotlib", "scipy", "fastapi", "starlette", "uvicorn"}
UNUSED_BY_DATA = {"sklearn", "matplotlib", "fastapi", "starlette", "uvicorn"}

PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
import tailorkit.cli, tailorkit.pipeline.run
after_cli = sorted(sys.modules)

import pandas as pd
from conftest import build_bpe_tokenizer
from tailorkit.config import DataConfig
from tailorkit.data.chat import prepare_chat_data
from tailorkit.data.quality import DataQuality

path = {data!r}
pd.DataFrame({{"prompt": [f"question {{i}}?" for i in range(40)],
               "completion": [f"answer {{i}}." for i in range(40)]}}).to_json(path, orient="records",
                                                                           lines=True)
cfg = DataConfig.model_validate({{"train": path}})
quality = DataQuality(cfg, {folder!r})
data = prepare_chat_data(cfg, build_bpe_tokenizer(), 64, quality if quality.enabled else None)
print(json.dumps({{"cli": after_cli, "data": sorted(sys.modules),
                   "sizes": {{name: len(split) for name, split in data.splits.items()}}}}))
"""


def test_training_imports_only_what_it_uses(tmp_path):
    code = PROBE.format(tests=str(Path(__file__).parent), data=str(tmp_path / "qa.jsonl"),
                        folder=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["sizes"] == {"train": 32, "validation": 4, "test": 4}  # the data path really ran

    def tops(names: list[str]) -> set[str]:
        return {name.split(".")[0] for name in names}

    assert tops(loaded["cli"]) & UNUSED_BY_CLI == set(), "imported by `import tailorkit.cli`"
    assert tops(loaded["data"]) & UNUSED_BY_DATA == set(), "imported by causal-LM data preparation"
