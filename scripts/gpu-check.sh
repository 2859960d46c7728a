#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (driver R580 / CUDA 13.0 or newer): builds tarjuma with
# --features cuda, runs the parity tests on the GPU and, given a GGUF model, prints one
# speed line.
#
#   bash scripts/gpu-check.sh [MODEL.gguf]
#
# A CUDA toolkit is not required: without one the CUDA 13.0 pip wheels are installed as in
# scripts/cuda-check.sh (scripts/cuda-env.sh says where from). Needs cargo, g++ and, without
# a system toolkit, python3 with pip and the package registry. Each step prints its time.
#
# Environment: CARGO_TARGET_DIR (default target/cuda: apart from the CPU build's target/),
# TARJUMA_CUDA_TOOLKIT=auto|system|wheels, CUDA_COMPUTE_CAP (default: read from
# nvidia-smi, else 90), GPU_CHECK_PROMPT_FILE (default: the seed article in
# ../shared/corpus/), GPU_CHECK_MAX_TOKENS (default 128).
set -euo pipefail
gguf=${1:-}
if [ -n "$gguf" ]; then
    [ -f "$gguf" ] || { echo "error: no GGUF file at $gguf" >&2; exit 1; }
    gguf=$(realpath "$gguf")
fi
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
command -v cargo >/dev/null || tarjuma_cuda_die "cargo is required (https://rustup.rs)"

start=$SECONDS
step_start=$SECONDS
step() {
    echo "[gpu-check] $1: $((SECONDS - step_start)) s (total $((SECONDS - start)) s)" >&2
    step_start=$SECONDS
}

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader >&2 ||
        tarjuma_cuda_die "nvidia-smi sees no GPU"
    if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
        cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
        [ -n "$cap" ] && export CUDA_COMPUTE_CAP=$cap
    fi
else
    echo "[gpu-check] warning: no nvidia-smi; the build goes on, the GPU steps will fail without a driver" >&2
fi

tarjuma_cuda_env
tarjuma_cuda_link_env
step "toolkit"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}
# `cargo build --release --features cuda` plus the test binary in one go: a test build
# unifies the dev-dependencies' features (getrandom, tempfile, zip, safetensors) and would
# otherwise rebuild candle and tarjuma a second time.
cargo build --release --features cuda --bins --test all
step "cargo build --release --features cuda --bins --test all"

export TARJUMA_TEST_DEVICE=cuda
cargo test --release --features cuda --test all parity -- --test-threads=1
step "parity tests on cuda"

if [ -n "$gguf" ]; then
    prompt=${GPU_CHECK_PROMPT_FILE:-../shared/corpus/russia-us-talks-2021-12-28.ur.txt}
    [ -f "$prompt" ] || tarjuma_cuda_die "no prompt file $prompt (set GPU_CHECK_PROMPT_FILE)"
    max_tokens=${GPU_CHECK_MAX_TOKENS:-128}
    t0=$(date +%s.%N)
    "$CARGO_TARGET_DIR/release/tarjuma" generate --device cuda --timing --model "$gguf" --raw \
        --prompt-file "$prompt" --max-tokens "$max_tokens" >"$CARGO_TARGET_DIR/gpu-check-generate.txt"
    t1=$(date +%s.%N)
    step "generate"
    echo "speed: $(basename "$gguf") on cuda, $(basename "$prompt"), $max_tokens new tokens max: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s wall (output in $CARGO_TARGET_DIR/gpu-check-generate.txt)"
fi
echo "[gpu-check] ok in $((SECONDS - start)) s" >&2
