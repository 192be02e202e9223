"""Time one MiniLM-L6 training step (batch 16, length 128, AdamW) in fp32 and bf16 autocast,
on 1 and 2 threads. Not a comparison against the standard stack; it only tells whether this
CPU's bf16 path pays off.

    .venv/bin/python bench/bf16_step.py
"""

import time

import torch
from transformers import AutoModelForSequenceClassification

from tailorkit.sources import resolve_model


def main() -> None:
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm-l6"), num_labels=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(1000, 20000, (16, 128))
    labels = torch.randint(0, 5, (16,))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bf16 in (False, True):
            times = []
            for _ in range(4):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                times.append(time.perf_counter() - start)
            best = min(times[1:])  # the first step warms up kernels
            print(f"threads {threads}  bf16 {bf16!s:5}  {best:.2f} s/step  {16 / best:.1f} samples/s")


if __name__ == "__main__":
    main()
