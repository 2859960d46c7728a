#!/usr/bin/env bash
# LLM speed, tarjuma side by side with llama.cpp, in one run (issue 13).
#
# For each model (a name from `tarjuma models list`, or a .gguf path) it alternates
# `tarjuma bench` and `llama-bench` on the same file, same threads, same tests, ROUNDS
# times, then prints one table per model: tokens/s of each engine per test (mean over
# rounds) and the ratio tarjuma / llama.cpp, with the CPU, its vector extensions and
# the kernels each engine ran. Alternating keeps a noisy neighbour from favouring one.
# Then, per model, one more process runs the longest prompt alone, for its peak memory.
#
#   bash scripts/bench-llm.sh [MODEL...]   # default: qwen2.5-coder-0.5b-instruct gemma-3-270m
#
# Environment:
#   THREADS=2 PROMPTS=256,1024 GEN=64 SEQUENCES=8 ROUNDS=2 REPS=1
#   LLAMA_BENCH   llama-bench binary (default: $LLAMA_CPP/build/bin/llama-bench). Build it
#                 from the llama.cpp source inside the llama-cpp-python sdist, outside the
#                 repo; on Intel CPUs with AVX-512 configure with -DGGML_NATIVE=OFF and the
#                 AVX512/VNNI/BF16 flags named one by one (-march=native enables AMX code
#                 that dies with SIGILL on these VMs).
#   PROFILE=release   cargo profile for tarjuma (dev reuses the test build)
#   OUT           JSON lines of every run are appended here (default /tmp/bench-llm-<time>.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PROMPTS=${PROMPTS:-256,1024}
GEN=${GEN:-64}
SEQUENCES=${SEQUENCES:-8}
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-1}
PROFILE=${PROFILE:-release}
LLAMA_CPP=${LLAMA_CPP:-/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp}
LLAMA_BENCH=${LLAMA_BENCH:-$LLAMA_CPP/build/bin/llama-bench}
OUT=${OUT:-/tmp/bench-llm-$(date +%s).jsonl}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(qwen2.5-coder-0.5b-instruct gemma-3-270m)
[ -x "$LLAMA_BENCH" ] || { echo "bench-llm: no llama-bench at $LLAMA_BENCH (set LLAMA_BENCH)" >&2; exit 2; }
export LD_LIBRARY_PATH="$(dirname "$LLAMA_BENCH"):${LD_LIBRARY_PATH:-}"

cargo build --profile "$PROFILE" --quiet --bin tarjuma
bin=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/tarjuma
: > "$OUT.tmp"
for m in "${MODELS[@]}"; do
    if [ -f "$m" ]; then path=$m; else
        "$bin" models fetch --quiet "$m" >/dev/null
        path=$("$bin" models path "$m")
    fi
    for r in $(seq "$ROUNDS"); do
        echo "[bench-llm] $m round $r/$ROUNDS" >&2
        "$bin" bench -m "$path" -t "$THREADS" -p "$PROMPTS" -n "$GEN" -s "1,$SEQUENCES" -r "$REPS" --json \
            | sed "s|^{|{\"engine\":\"tarjuma\",\"name\":\"$m\",\"round\":$r,|" >> "$OUT.tmp"
        "$LLAMA_BENCH" -m "$path" -t "$THREADS" -p "$PROMPTS" -n "$GEN" -r "$REPS" -o jsonl 2>/dev/null \
            | sed "s|^{|{\"engine\":\"llama.cpp\",\"name\":\"$m\",\"round\":$r,|" >> "$OUT.tmp"
    done
    # Peak memory of the longest prompt alone, in a process of its own: the runs above
    # peak on their 8 sequences' caches, which is not what a prompt costs.
    longest=$(tr ',' '\n' <<<"$PROMPTS" | sort -n | tail -n 1)
    "$bin" bench -m "$path" -t "$THREADS" -p "$longest" -n 0 -r 1 --json \
        | sed "s|^{|{\"engine\":\"tarjuma-prompt-alone\",\"name\":\"$m\",|" >> "$OUT.tmp"
done
cat "$OUT.tmp" >> "$OUT" && rm -f "$OUT.tmp"
python3 scripts/bench-llm-table.py "$OUT"
echo "(JSON lines: $OUT)" >&2
