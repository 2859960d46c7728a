#!/usr/bin/env bash
# End to end, as articles/hour (issue 13): `tarjuma run` on the seed article from
# ../shared/corpus, and on 20 short articles cut from it in one batch (its title and three
# consecutive body paragraphs each, wrapping round), with the default model.
#
# Variants run alternately (A B B A …) so that a noisy neighbour favours none of them,
# and each run's Markdown is compared with the first run's (kernels that give the same
# bits must write the same articles). Exit status: non-zero if any run failed or left
# an article not `ok`.
#
#   bash scripts/bench-e2e.sh [LABEL=COMMAND ...]
#
# A variant's COMMAND is how to start tarjuma, e.g.
#   bash scripts/bench-e2e.sh avx2='env TARJUMA_FORCE_CPU_ISA=avx2 target/release/tarjuma' \
#                             best=target/release/tarjuma
#   bash scripts/bench-e2e.sh old=/tmp/tarjuma-2e773a3 new=target/release/tarjuma
# Default: one variant, `default=target/release/tarjuma` (built here).
#
# Environment:
#   ROUNDS=1      A B … then … B A pairs per input (ROUNDS=1: each variant twice on the
#                 short batch; the seed article once per variant per round)
#   INPUTS="short seed"   which inputs to run
#   THREADS=2 PARALLEL=8  passed to `tarjuma run` as -t and --parallel
#   MODEL         summary/translation model (default: tarjuma's default)
#   OUT           JSON lines are appended here (default /tmp/bench-e2e-<time>.jsonl)
#   KEEP=1        keep the work directory (inputs and every run's output)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1}
INPUTS=${INPUTS:-short seed}
THREADS=${THREADS:-2}
PARALLEL=${PARALLEL:-8}
OUT=${OUT:-/tmp/bench-e2e-$(date +%s).jsonl}
SEED=../shared/corpus/russia-us-talks-2021-12-28.ur.txt
[ -f "$SEED" ] || { echo "bench-e2e: no seed article at $SEED" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-e2e: ROUNDS must be a positive integer" >&2; exit 2; }

LABELS=() CMDS=()
if [ $# -eq 0 ]; then
    cargo build --release --quiet --bin tarjuma
    set -- default=target/release/tarjuma
fi
for v in "$@"; do
    [[ $v == *=* ]] || { echo "bench-e2e: a variant is LABEL=COMMAND, got '$v'" >&2; exit 2; }
    LABELS+=("${v%%=*}") CMDS+=("${v#*=}")
done

work=$(mktemp -d /tmp/bench-e2e.XXXXXX)
[ "${KEEP:-0}" = 1 ] && echo "bench-e2e: work directory $work" >&2 || trap 'rm -rf "$work"' EXIT

mkdir -p "$work/short" "$work/seed"
cp "$SEED" "$work/seed/"
python3 - "$SEED" "$work/short" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
paras = [p.strip() for p in text.split("\n\n") if p.strip()]
title, body = paras[0].splitlines()[0], paras[1:]
for i in range(20):
    start = (3 * i) % len(body)
    picked = [body[(start + j) % len(body)] for j in range(3)]
    with open(f"{sys.argv[2]}/short-{i:02}.txt", "w", encoding="utf-8") as f:
        f.write("\n\n".join([title] + picked) + "\n")
PY

model_args=()
[ -n "${MODEL:-}" ] && model_args=(-m "$MODEL")
# Fetch the model once, outside the timings.
eval "${CMDS[0]}" models fetch --quiet "${MODEL:-qwen2.5-coder-0.5b-instruct}" >/dev/null

cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
vendor=$(lscpu | sed -n 's/^Vendor ID:[[:space:]]*//p' | head -1)
family=$(lscpu | sed -n 's/^CPU family:[[:space:]]*//p' | head -1)
cpumodel=$(lscpu | sed -n 's/^Model:[[:space:]]*//p' | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx_vnni|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|amx_int8)$' | tr '\n' ' ')
echo "bench-e2e: $vendor $cpu (family $family model $cpumodel; $flags), $THREADS threads, --parallel $PARALLEL" >&2

# One run: variant index, input name, round; appends a JSON line and prints the seconds.
run_one() {
    local i=$1 input=$2 round=$3 dir n t0 t1 rc ok
    dir=$work/out-${LABELS[$i]}-$input-$round-$RANDOM
    t0=$(date +%s.%N)
    set +e
    eval "${CMDS[$i]}" run "$work/$input" --out "$dir" -t "$THREADS" --parallel "$PARALLEL" \
        --quiet "${model_args[@]}" >"$dir.log" 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    n=$(find "$work/$input" -name '*.txt' | wc -l)
    ok=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get("status")=="ok"))' "$dir/results.jsonl" 2>/dev/null || echo 0)
    python3 - "$OUT" "${LABELS[$i]}" "$input" "$round" "$t0" "$t1" "$rc" "$n" "$ok" "$cpu" "$vendor" "$family" "$cpumodel" "$flags" "$THREADS" "$PARALLEL" <<'PY'
import json, sys
(out, label, inp, rnd, t0, t1, rc, n, ok, cpu, vendor, fam, mod, flags, th, par) = sys.argv[1:]
secs = float(t1) - float(t0)
rec = {"variant": label, "input": inp, "round": int(rnd), "seconds": round(secs, 2),
       "articles": int(n), "ok": int(ok), "exit": int(rc),
       "articles_per_hour": round(int(n) * 3600 / secs, 1),
       "cpu": cpu, "vendor": vendor, "family": fam, "model": mod, "flags": flags.split(),
       "threads": int(th), "parallel": int(par)}
open(out, "a").write(json.dumps(rec) + "\n")
PY
    echo "$dir"
    if [ "$rc" != 0 ] || [ "$ok" != "$n" ]; then
        echo "bench-e2e: ${LABELS[$i]} on $input: exit $rc, $ok of $n ok (log: $dir.log)" >&2
        touch "$work/failed"
    fi
}

declare -A first_out
for input in $INPUTS; do
    [ -d "$work/$input" ] || { echo "bench-e2e: unknown input '$input' (short, seed)" >&2; exit 2; }
    order=()
    for r in $(seq "$ROUNDS"); do
        fwd=$(seq 0 $((${#LABELS[@]} - 1)))
        if [ "$input" = short ]; then
            order+=($fwd $(echo "$fwd" | tac))
        elif (( r % 2 )); then order+=($fwd); else order+=($(echo "$fwd" | tac)); fi
    done
    round=0
    for i in "${order[@]}"; do
        round=$((round + 1))
        echo "bench-e2e: ${LABELS[$i]} on $input (run $round of ${#order[@]})" >&2
        dir=$(run_one "$i" "$input" "$round")
        # Which articles read differently from the first run (kernels that give the same
        # bits must write the same Markdown; a change of rounding moves greedy text).
        if [ -z "${first_out[$input]:-}" ]; then first_out[$input]=$dir; else
            ref=${first_out[$input]} differ=0 total=0
            for md in "$ref"/*.md; do
                total=$((total + 1))
                cmp -s "$md" "$dir/$(basename "$md")" || differ=$((differ + 1))
            done
            echo "bench-e2e: ${LABELS[$i]} on $input: $differ of $total articles' Markdown differ from the first run (${LABELS[${order[0]}]})" >&2
        fi
    done
done

python3 - "$OUT" "${LABELS[@]}" <<'PY'
import json, sys, statistics
out, labels = sys.argv[1], sys.argv[2:]
recs = [json.loads(l) for l in open(out)]
cpu = recs[-1]
print(f"\n{cpu['vendor']} {cpu['cpu']} (family {cpu['family']} model {cpu['model']}), "
      f"{cpu['threads']} threads, --parallel {cpu['parallel']}\n")
print("| input | " + " | ".join(labels) + (" | ratio " + labels[-1] + "/" + labels[0] if len(labels) > 1 else "") + " |")
print("|---" * (len(labels) + 1 + (len(labels) > 1)) + "|")
for inp in dict.fromkeys(r["input"] for r in recs):
    cells, rates = [], []
    for lab in labels:
        rs = [r for r in recs if r["input"] == inp and r["variant"] == lab]
        secs = [r["seconds"] for r in rs]
        n = rs[0]["articles"] if rs else 0
        rate = n * 3600 / statistics.mean(secs) if secs else float("nan")
        rates.append(rate)
        bad = sum(r["exit"] != 0 or r["ok"] != r["articles"] for r in rs)
        cells.append(", ".join(f"{s:.1f}" for s in secs) + f" s ({rate:.1f} articles/hour)"
                     + (f", {bad} failed" if bad else ""))
    ratio = f" | {rates[-1] / rates[0]:.2f}" if len(labels) > 1 else ""
    print(f"| {inp} ({n}) | " + " | ".join(cells) + ratio + " |")
PY
echo "(JSON lines: $OUT)" >&2
[ ! -e "$work/failed" ]
