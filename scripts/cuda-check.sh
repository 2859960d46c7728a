#!/usr/bin/env bash
# Keeps the CUDA build compiling on machines without a GPU or a CUDA install (.ci/run calls
# it after scripts/test.sh): `cargo check --features cuda --all-targets` with a CUDA 13.0
# toolkit from NVIDIA's pip wheels (see scripts/cuda-env.sh; installed once into
# $TARJUMA_CACHE/cuda-toolkit), or the system one where there is one.
#
# candle-kernels' build script runs nvcc even for a check. Its PTX kernels are compiled for
# real; the static library of quantized-matmul/MoE kernels, which only linking needs, is
# preprocessed and left empty (scripts/nvcc-check.sh; TARJUMA_CUDA_CHECK_KERNELS=all builds
# it too, 10+ minutes more on two cores). First run 3 to 5 minutes on two cores (toolkit
# download included), then seconds.
#
# Environment: CARGO_TARGET_DIR (default target/cuda-check, apart from the CPU build's
# target/), TARJUMA_CACHE, TARJUMA_CUDA_TOOLKIT=auto|system|wheels, CUDA_COMPUTE_CAP
# (default 90), CUDAFORGE_THREADS (parallel nvcc jobs, default: the core count).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh

command -v cargo >/dev/null || tarjuma_cuda_die "cargo is required (https://rustup.rs)"
start=$SECONDS
tarjuma_cuda_env
echo "[cuda] toolkit ready in $((SECONDS - start)) s" >&2

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda-check}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}
export TARJUMA_REAL_NVCC="$CUDA_HOME/bin/nvcc" NVCC="$PWD/scripts/nvcc-check.sh"
# A check compiles only build scripts and proc macros: build them unoptimised and without
# debug info (Cargo.toml optimises dependencies for the tests; here that doubles the time).
step=$SECONDS
cargo check --features cuda --all-targets \
    --config 'profile.dev.package."*".opt-level=0' --config 'profile.dev.package."*".debug=0' \
    --config 'profile.dev.debug=0'
echo "[cuda] cargo check --features cuda --all-targets: ok in $((SECONDS - step)) s (total $((SECONDS - start)) s)" >&2
