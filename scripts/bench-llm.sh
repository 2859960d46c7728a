#!/usr/bin/env bash
# LLM prefill and decode speed: tarjuma's decoder engine beside candle 0.11's quantized
# models on the pip-carried GGUFs (issue 9's before/after table), same prompt (the seed
# article), same threads, alternating runs in one process (benches/llm.rs). Names the CPU.
#
#   bash scripts/bench-llm.sh [MODEL...]     # default: the four pip-carried models
#   THREADS=2 PROMPT=256 DECODE=64 PROFILE=release bash scripts/bench-llm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-256}
DECODE=${DECODE:-64}
# PROFILE=dev reuses the test build (dependencies are optimised there too).
PROFILE=${PROFILE:-release}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m-instruct gemma-3-270m qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct)
lscpu | grep -E '^(Model name|Vendor ID|CPU\(s\)):' | sed 's/  */ /g'
echo "flags: $(grep -o -w -E 'avx2|fma|f16c|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
cargo build --profile "$PROFILE" --quiet --bin tarjuma --bench llm
bin=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/tarjuma
paths=()
for m in "${MODELS[@]}"; do
    "$bin" models fetch --quiet "$m" >/dev/null
    paths+=("$("$bin" models path "$m")")
done
cargo bench --profile "$PROFILE" --quiet --bench llm -- --threads "$THREADS" --prompt "$PROMPT" --decode "$DECODE" "${paths[@]}"
