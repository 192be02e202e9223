"""Print a markdown table comparing finished runs, from their summary.json files.

    python scripts/methods_table.py runs/bbc-full runs/bbc-lora ...

Columns: test accuracy and macro-F1, trainable parameters, train time per epoch, the
run's wall time (loading, training, evaluation, saving), samples/s, peak RSS and the size of
the saved weights (the adapter alone for
adapter methods, the whole model otherwise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _describe(method: dict) -> str:
    ((name, config),) = method.items()
    return name + (" " + json.dumps(config, separators=(", ", ": ")) if config else "")


def row(run_dir: Path) -> str:
    s = json.loads((run_dir / "summary.json").read_text())
    methods = ", ".join(_describe(m) for m in s["methods"])
    p = s["parameters"]
    per_epoch = s["train_seconds"] / max(s["epochs"], 1e-9)
    speed = "-" if s["samples_per_second"] is None else f"{s['samples_per_second']:.1f}"  # epochs: 0
    return (f"| {run_dir.name} | {methods} | {s['test']['accuracy']:.4f} | "
            f"{s['test']['f1_macro']:.4f} | {p['trainable']:,} ({p['trainable_pct']:.2f}%) | "
            f"{s['epochs']:g} | {per_epoch:.0f} | {s['wall_seconds']:.0f} | {speed} | "
            f"{s['peak_rss_mb']:.0f} | {s['artefact_mb']:.2f} |")


def main(run_dirs: list[str]) -> None:
    print("| run | methods | test accuracy | test macro-F1 | trainable params | epochs | "
          "s / epoch | wall s | samples/s | peak RSS MB | saved weights MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run_dir in run_dirs:
        print(row(Path(run_dir)))


if __name__ == "__main__":
    main(sys.argv[1:])
