#!/usr/bin/env bash
# The GPU paths of tailorkit, run for real where a CUDA machine is available; one JSON of results.
#
#     bash bench/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check-<date>
#
# Runs (each short, with its own time limit; about 8 minutes in all on one modern GPU):
#   lora-bf16, lora-fp16   LoRA on MiniLM-L6 / BBC News, train.device cuda, bf16 and fp16 autocast
#   full-bf16              full fine-tuning of the same
#   qlora-bf16             QLoRA (bitsandbytes NF4 base) on SmolLM2-135M, the CPU recipe unchanged
#   ddp2-lora-bf16         `--nproc 2` (NCCL, one GPU per process), only with 2 or more GPUs
#   trainer-ratio          bench/compare.py: tailorkit vs the transformers Trainer on the same GPU
# and writes OUT_DIR/gpu_check.json: the machine, and per run its exit status, seconds, device,
# precision, samples/s, peak GPU memory and test metrics. A failed run is recorded, not fatal.
#
# UNTESTED: written on a machine without a GPU (2026-11-30). The first run on a GPU machine
# checks the script as much as tailorkit; fix what it finds and put the numbers in
# bench/RESULTS.md with the date.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
LOG="$OUT/runs.tsv"
: > "$LOG"

"$PY" - <<'EOF' || { echo "gpu_check: torch sees no CUDA device; nothing to check" >&2; exit 2; }
import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')

# run NAME LIMIT_S tailor-args...: one tailor command, its status and seconds into runs.tsv
run() {
    local name=$1 limit=$2; shift 2
    local started=$SECONDS
    timeout "$limit" "$PY" -m tailorkit.cli "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - started))" >> "$LOG"
    echo "gpu_check: $name: exit $rc in $((SECONDS - started)) s"
}

SMALL=(--set data.max_train_samples=800 --set data.max_eval_samples=200 --set train.epochs=1
       --set train.progress=false --set train.device=cuda)

run lora-bf16 120 train recipes/bbc-lora.yaml "${SMALL[@]}" --set train.precision=bf16 \
    --set output_dir="$OUT/lora-bf16"
run lora-fp16 120 train recipes/bbc-lora.yaml "${SMALL[@]}" --set train.precision=fp16 \
    --set output_dir="$OUT/lora-fp16"
run full-bf16 120 train recipes/bbc-full.yaml "${SMALL[@]}" --set train.precision=bf16 \
    --set output_dir="$OUT/full-bf16"
run qlora-bf16 150 train recipes/smollm2-qlora-chatterbot.yaml --set train.device=cuda \
    --set train.precision=bf16 --set train.max_steps=30 --set train.progress=false \
    --set output_dir="$OUT/qlora-bf16"
if [[ "$GPUS" -ge 2 ]]; then
    run ddp2-lora-bf16 150 train recipes/bbc-lora.yaml "${SMALL[@]}" --set train.precision=bf16 \
        --set output_dir="$OUT/ddp2-lora-bf16" --nproc 2
fi

started=$SECONDS
timeout 180 "$PY" bench/compare.py --method lora --data tweet-sentiment --max-train 1000 --epochs 1 \
    --bf16 --results "$OUT/trainer-ratio.md" --note "bench/gpu_check.sh" > "$OUT/trainer-ratio.log" 2>&1
printf '%s\t%s\t%s\n' trainer-ratio "$?" "$((SECONDS - started))" >> "$LOG"

"$PY" - "$OUT" <<'EOF'
import json, subprocess, sys, time
from pathlib import Path

import torch

out = Path(sys.argv[1])
runs = {}
for line in (out / "runs.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    entry = {"exit": int(rc), "seconds": int(seconds), "log": f"{name}.log"}
    summary = out / name / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        entry.update({k: s.get(k) for k in ("device", "precision", "processes", "effective_batch_size",
                                            "samples_per_second", "train_seconds", "peak_memory",
                                            "peak_rss_mb", "test")})
    runs[name] = entry
ratio = out / "trainer-ratio.md"
report = {
    "date": time.strftime("%Y-%m-%d %H:%M"),
    "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    "bf16_supported": torch.cuda.is_bf16_supported(),
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "nvidia_smi": subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True).stdout.strip(),
    "runs": runs,
    "trainer_ratio_markdown": ratio.read_text() if ratio.is_file() else None,
}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(f"gpu_check: wrote {out / 'gpu_check.json'}")
failed = [n for n, r in runs.items() if r["exit"] != 0]
print("gpu_check: failed: " + (", ".join(failed) if failed else "none"))
EOF
