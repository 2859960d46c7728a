#!/usr/bin/env bash
# Summary time against article length (issue 10): English texts of 1x, 10x and 50x the
# seed article's length in words, built from tests/fixtures/summary/flood-relief.en.txt
# (each copy's numbers shifted, so that copies are not duplicates), summarised by
# `tarjuma summarize` with a pip-carried model. Candidates are found in one pass over
# the text and only --max-bullets sentences reach the model, so the time grows linearly
# with the length, with a constant model part.
#
#   bash scripts/bench-summary.sh [MODEL]        # default smollm2-135m-instruct
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m-instruct}
THREADS=${THREADS:-2}
# BIN=target/debug/tarjuma reuses the test build (dependencies optimised there too).
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/tarjuma
fi
"$BIN" models fetch --quiet "$MODEL" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seed_words=$(wc -w < ../shared/corpus/russia-us-talks-2021-12-28.ur.txt)
python3 - "$work" "$seed_words" <<'PY'
import re, sys
work, seed_words = sys.argv[1], int(sys.argv[2])
paras = [p.strip() for p in open("tests/fixtures/summary/flood-relief.en.txt").read().split("\n\n") if p.strip()]
for mult in (1, 10, 50):
    out, words, k = [], 0, 0
    while words < seed_words * mult:
        p = paras[k % len(paras)]
        copy = k // len(paras)
        # Shift every number by the copy index, so that copies differ.
        p = re.sub(r"\d+", lambda m: str(int(m.group()) + copy), p) if copy else p
        out.append(p)
        words += len(p.split())
        k += 1
    open(f"{work}/x{mult}.txt", "w").write("\n\n".join(out) + "\n")
PY
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $THREADS threads, model $MODEL"
echo
echo "| length | words | seconds | seconds per 1,000 words | bullets |"
echo "|---|---|---|---|---|"
for mult in 1 10 50; do
    f="$work/x$mult.txt"
    words=$(wc -w < "$f")
    start=$(date +%s.%N)
    n=$("$BIN" summarize --quiet --threads "$THREADS" --model "$MODEL" "$f" | grep -c '^- ' || true)
    end=$(date +%s.%N)
    python3 -c "s=$end-$start; print(f'| {$mult}x | {$words} | {s:.1f} | {s/$words*1000:.2f} | $n |')"
done
