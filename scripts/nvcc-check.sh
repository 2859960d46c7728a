#!/usr/bin/env bash
# nvcc for `cargo check` only: scripts/cuda-check.sh points candle-kernels' build script at
# it (NVCC=...). It runs the real nvcc for everything except object files (`-c -o F.o`):
# those are candle's quantized-matmul and MoE kernels (src/mmq_gguf, moe), built into a
# static library that only a linked binary uses, and they take 10+ minutes of nvcc on two
# cores. For each it only preprocesses the source with the real nvcc (so include paths and
# headers are still checked) and writes an empty object. The PTX kernels (what candle loads
# at run time) are compiled for real. TARJUMA_CUDA_CHECK_KERNELS=all compiles everything.
set -euo pipefail
real=${TARJUMA_REAL_NVCC:-nvcc}

if [ "${TARJUMA_CUDA_CHECK_KERNELS:-ptx}" = all ]; then exec "$real" "$@"; fi

compile=0 out="" prev="" pre=()
for a in "$@"; do
    if [ "$prev" = -o ]; then
        out=$a
        pre+=(/dev/null)
    elif [ "$a" = -c ]; then
        compile=1
        pre+=(-E)
    else
        pre+=("$a")
    fi
    prev=$a
done
if [ "$compile" = 0 ] || [ -z "$out" ]; then exec "$real" "$@"; fi

"$real" "${pre[@]}"
cc -x c -c /dev/null -o "$out"
