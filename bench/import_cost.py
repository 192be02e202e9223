"""What tailorkit's own imports add to a causal-LM run's memory (issue #20): the RSS that
`import tailorkit.cli, tailorkit.pipeline.run` adds once torch, transformers and PEFT (which a
run loads anyway) are imported, and which of the heavy libraries that leaves loaded.

    .venv/bin/python bench/import_cost.py

Run it in a fresh process (it is one): a module imported before it is not counted.
"""

from __future__ import annotations

import sys

WATCH = ["pandas", "pyarrow", "sklearn", "matplotlib", "scipy", "PIL", "fastapi", "starlette", "uvicorn",
         "ftfy"]


def rss_mb() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) // 1024


def main() -> None:
    import peft.tuners.lora  # noqa: F401  (a LoRA run's own imports, counted apart)
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    before = {name for name in WATCH if name in sys.modules}
    start = rss_mb()
    import tailorkit.cli
    import tailorkit.pipeline.run  # noqa: F401

    print(f"tailorkit's imports: {rss_mb() - start} MB")
    print(f"loaded by torch/transformers/PEFT already: {', '.join(sorted(before)) or 'none'}")
    added = [name for name in WATCH if name in sys.modules and name not in before]
    print(f"loaded by tailorkit: {', '.join(added) or 'none'}")


if __name__ == "__main__":
    main()
