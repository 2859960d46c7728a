#!/usr/bin/env bash
# Every pip-carried instruction model end to end (issue 9, must-show 2): the seed
# article through `tarjuma run`, and an English article through `tarjuma summarize`.
# Prints, per model, the exit codes, the record's status, how many paragraphs the
# guards flagged (and with what), the bullets kept and dropped, and wall times.
#
#   bash scripts/check-pip-models.sh [MODEL...]
#   BIN=target/debug/tarjuma THREADS=2 bash scripts/check-pip-models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(smollm2-135m-instruct gemma-3-270m qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct)
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/tarjuma
fi
SEED=../shared/corpus/russia-us-talks-2021-12-28.ur.txt
ENGLISH=${ENGLISH:-tests/fixtures/summary/flood-relief.en.txt}
OUT=${OUT:-target/pip-models-check}
mkdir -p "$OUT"
lscpu | grep -E '^Model name:' | sed 's/  */ /g'
for m in "${MODELS[@]}"; do
    "$BIN" models fetch --quiet "$m" >/dev/null
    rm -rf "$OUT/$m"
    t0=$(date +%s)
    set +e
    "$BIN" run --quiet --threads "$THREADS" --model "$m" --out "$OUT/$m" "$SEED" 2>"$OUT/$m.run.err"
    run_rc=$?
    t1=$(date +%s)
    "$BIN" summarize --quiet --threads "$THREADS" --model "$m" --json "$ENGLISH" >"$OUT/$m.summary.json" 2>"$OUT/$m.summary.err"
    sum_rc=$?
    t2=$(date +%s)
    set -e
    python3 - "$m" "$OUT" "$run_rc" "$sum_rc" "$((t1 - t0))" "$((t2 - t1))" <<'PY'
import collections, json, sys
m, out, run_rc, sum_rc, run_s, sum_s = sys.argv[1:7]
line = f"{m}: run exit {run_rc} ({run_s} s)"
try:
    r = json.loads(open(f"{out}/{m}/results.jsonl").readline())
    paras = r.get("paragraphs", [])
    flagged = [p for p in paras if p.get("warnings")]
    kinds = collections.Counter(w if isinstance(w, str) else json.dumps(w) for p in paras for w in p.get("warnings", []))
    line += (f", status {r['status']}, {len(paras) - len(flagged)}/{len(paras)} paragraphs unflagged"
             f" {dict(kinds)}, {len(r.get('summary', []))} bullets, summary_error {r.get('summary_error')}")
except Exception as e:  # the run failed before writing a record
    line += f", no record ({e})"
line += f"; summarize exit {sum_rc} ({sum_s} s)"
try:
    s = json.load(open(f"{out}/{m}.summary.json"))
    line += f", {len(s.get('summary', []))} bullets, {len(s.get('dropped_bullets', []))} dropped, summary_error {s.get('summary_error')}"
except Exception as e:
    line += f", no output ({e})"
print(line)
PY
done
