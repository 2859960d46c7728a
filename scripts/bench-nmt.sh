#!/usr/bin/env bash
# Translator throughput, tarjuma side by side with its peers, in one run.
#
# For each model shape (random weights, real shapes: opus-mt-ur-en Marian and
# NLLB-200-distilled-600M) and batch size, it runs, one after another on the same
# machine: HF transformers fp32, CTranslate2 fp32, CTranslate2 int8, tarjuma f32 and
# tarjuma int8 (and tarjuma q8_0 on request), all doing the same work (greedy, SRC_LEN source tokens, exactly
# TGT_LEN generated tokens, THREADS threads), and prints target tokens/s and the
# ratios tarjuma f32 / CT2 fp32 and tarjuma int8 / CT2 int8.
#
# Usage: scripts/bench-nmt.sh            (every setting below has a default)
#
# Environment:
#   MODELS="marian nllb"   model shapes to run
#   BATCHES="16 1"         batch sizes
#   ENGINES="hf ct2 tarjuma"  engines (tarjuma = tarjuma-f32 + tarjuma-int8); also the
#                          single variants ct2-fp32 ct2-int8 tarjuma-f32 tarjuma-int8
#                          tarjuma-q8_0 (GGML Q8_0 through candle), e.g. ENGINES="tarjuma ct2"
#   N                      sequences per repetition (default 64 at batch >= 16, else 16)
#   REPS=3                 timed repetitions per engine (each engine also warms up)
#   ROUNDS=1               cycles through the engines; results of all rounds are pooled
#   THREADS=2 SRC_LEN=40 TGT_LEN=40
#   OUT                    JSON lines are appended here (default $ANCHORS/results-<time>.jsonl)
#   ANCHORS=/tmp/anchors   everything installed or built for the peers goes here
#   MODELS_DIR=$ANCHORS/models
#   BENCH_PY               python with torch, transformers, ctranslate2 (default:
#                          /tmp/nmtenv/bin/python, else $ANCHORS/venv, created if missing)
#   SHARED=<repo>/../shared  holds bench/{make_models.py,seq2seq_bench.py,wait_quiet.sh}
#   QUIET_MAX_S=60         wait at most this long for an idle machine before each
#                          timing (then run anyway; foreign_busy_cores shows it); 0 = skip
#   QUIET_CORES=0.15       busy cores below which the machine counts as idle
#   PREPARE_ONLY=1         only build/convert the models and build the bench, then stop
#   BEAM_PAIRS=3           after the engines: for each tarjuma variant selected (f32,
#                          int8), one process at batch 1 that decodes every sequence
#                          greedily and with beam search (BEAMS) back to back, the order
#                          alternating, for BEAM_PAIRS repetitions (pairs); the table gives
#                          each pair's beam / greedy and the median. 0 skips them.
#   BEAMS=4                beams for those pairs
#   BEAM_N                 sequences per pair (default 16 for Marian, 8 for NLLB)
#
# Exit status: non-zero if any engine run failed (the others still run and are tabled).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared}
BENCH_DIR=$SHARED/bench
ANCHORS=${ANCHORS:-/tmp/anchors}
MODELS_DIR=${MODELS_DIR:-$ANCHORS/models}
MODELS=${MODELS:-marian nllb}
BATCHES=${BATCHES:-16 1}
ENGINES=${ENGINES:-hf ct2 tarjuma}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
THREADS=${THREADS:-2}
SRC_LEN=${SRC_LEN:-40}
TGT_LEN=${TGT_LEN:-40}
QUIET_MAX_S=${QUIET_MAX_S:-60}
QUIET_CORES=${QUIET_CORES:-0.15}
PREPARE_ONLY=${PREPARE_ONLY:-0}
BEAM_PAIRS=${BEAM_PAIRS:-3}
BEAMS=${BEAMS:-4}
RUN_ID=${RUN_ID:-nmt-$(date +%Y%m%d-%H%M%S)}
OUT=${OUT:-$ANCHORS/results-$(date +%s).jsonl}

say() { printf '[bench-nmt %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
T_STEP=0
step_start() { T_STEP=$(date +%s); say "== $*"; }
step_end() { say "   done in $(( $(date +%s) - T_STEP ))s"; }

[[ -d $BENCH_DIR ]] || die "peer bench scripts not found at $BENCH_DIR (set SHARED)"
for f in make_models.py seq2seq_bench.py; do
  [[ -f $BENCH_DIR/$f ]] || die "missing $BENCH_DIR/$f"
done
for x in REPS ROUNDS THREADS SRC_LEN TGT_LEN QUIET_MAX_S BEAM_PAIRS; do
  [[ ${!x} =~ ^[0-9]+$ ]] || die "$x must be a non-negative integer, got '${!x}'"
done
(( REPS >= 1 && ROUNDS >= 1 && THREADS >= 1 )) || die "REPS, ROUNDS and THREADS must be >= 1"
for b in $BATCHES; do [[ $b =~ ^[1-9][0-9]*$ ]] || die "bad batch size '$b' in BATCHES"; done
if [[ -n ${N:-} ]]; then [[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer"; fi
if [[ -n ${BEAM_N:-} ]]; then [[ $BEAM_N =~ ^[1-9][0-9]*$ ]] || die "BEAM_N must be a positive integer"; fi
[[ $BEAMS =~ ^[0-9]+$ ]] && (( BEAMS >= 2 )) || die "BEAMS must be an integer >= 2, got '$BEAMS'"

# ---- which engine variants ------------------------------------------------------------
VARIANTS=()
add_variant() { local v; for v in "${VARIANTS[@]:-}"; do [[ $v == "$1" ]] && return; done; VARIANTS+=("$1"); }
for e in $ENGINES; do
  case $e in
    hf | transformers) add_variant hf ;;
    ct2) add_variant ct2-fp32; add_variant ct2-int8 ;;
    ct2-fp32 | ct2-int8) add_variant "$e" ;;
    tarjuma) add_variant tarjuma-f32; add_variant tarjuma-int8 ;;
    tarjuma-f32 | tarjuma-int8 | tarjuma-q8_0) add_variant "$e" ;;
    *) die "unknown engine '$e' (hf ct2 ct2-fp32 ct2-int8 tarjuma tarjuma-f32 tarjuma-int8 tarjuma-q8_0)" ;;
  esac
done
(( ${#VARIANTS[@]} > 0 )) || die "ENGINES selects nothing"
has() { local v; for v in "${VARIANTS[@]}"; do [[ $v == $1 ]] && return 0; done; return 1; }

model_name() {
  case $1 in
    marian) echo marian-ur-en-random ;;
    nllb) echo nllb-600m-random ;;
    *) die "unknown model '$1' (marian nllb)" ;;
  esac
}
for m in $MODELS; do model_name "$m" >/dev/null; done

mkdir -p "$ANCHORS" "$MODELS_DIR" "$(dirname "$OUT")"
LOG_DIR=$ANCHORS/logs/$RUN_ID
mkdir -p "$LOG_DIR"
T_ALL=$(date +%s)

# ---- python with the peers ------------------------------------------------------------
step_start "python environment"
if [[ -z ${BENCH_PY:-} ]]; then
  if [[ -x /tmp/nmtenv/bin/python ]]; then
    BENCH_PY=/tmp/nmtenv/bin/python
  elif [[ -x $ANCHORS/venv/bin/python ]]; then
    BENCH_PY=$ANCHORS/venv/bin/python
  else
    say "creating $ANCHORS/venv and installing torch transformers sentencepiece ctranslate2 (large download)"
    python3 -m venv "$ANCHORS/venv"
    "$ANCHORS/venv/bin/python" -m pip install --upgrade pip >&2
    "$ANCHORS/venv/bin/python" -m pip install torch transformers sentencepiece ctranslate2 >&2
    BENCH_PY=$ANCHORS/venv/bin/python
  fi
fi
[[ -x $BENCH_PY ]] || die "BENCH_PY=$BENCH_PY is not executable"
"$BENCH_PY" - <<'EOF' || die "BENCH_PY=$BENCH_PY lacks a needed package (pip install torch transformers sentencepiece ctranslate2)"
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "ctranslate2", "tokenizers", "safetensors")
           if importlib.util.find_spec(m) is None]
if missing:
    print("missing python packages: " + " ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
CT2_CONVERT=$(dirname "$BENCH_PY")/ct2-transformers-converter
say "python: $BENCH_PY"
step_end

# ---- models ---------------------------------------------------------------------------
hf_ok() { [[ -f $1/config.json && -f $1/model.safetensors && -f $1/tokenizer.json ]]; }
ct2_ok() { [[ -f $1/model.bin && -f $1/config.json && -f $1/shared_vocabulary.json ]]; }

step_start "models in $MODELS_DIR"
missing=()
for m in $MODELS; do
  hf_ok "$MODELS_DIR/$(model_name "$m")" || missing+=("$m")
done
if (( ${#missing[@]} > 0 )); then
  which=$(IFS=,; echo "${missing[*]}")
  say "building random real-shape models: $which (NLLB takes minutes and ~2.5 GB)"
  WHICH=$which "$BENCH_PY" "$BENCH_DIR/make_models.py" "$MODELS_DIR" >&2 \
    || die "make_models.py failed"
  for m in "${missing[@]}"; do
    hf_ok "$MODELS_DIR/$(model_name "$m")" || die "make_models.py did not produce $MODELS_DIR/$(model_name "$m")"
  done
else
  say "HF models present"
fi
step_end

if has 'ct2-*'; then
  step_start "CTranslate2 conversions in $MODELS_DIR/ct2"
  [[ -x $CT2_CONVERT ]] || die "$CT2_CONVERT not found (ctranslate2 not installed next to BENCH_PY?)"
  for m in $MODELS; do
    name=$(model_name "$m")
    for q in fp32 int8; do
      has "ct2-$q" || continue
      dst=$MODELS_DIR/ct2/$name-$q
      if ct2_ok "$dst"; then say "present: $dst"; continue; fi
      args=()
      [[ $q == int8 ]] && args=(--quantization int8)
      say "converting $name -> $dst"
      t0=$(date +%s)
      rm -rf "$dst.tmp"
      "$CT2_CONVERT" --model "$MODELS_DIR/$name" --output_dir "$dst.tmp" "${args[@]}" --force \
        >"$LOG_DIR/convert-$name-$q.log" 2>&1 \
        || { tail -n 20 "$LOG_DIR/convert-$name-$q.log" >&2; die "conversion of $name ($q) failed"; }
      ct2_ok "$dst.tmp" || die "conversion of $name ($q) left no model.bin/shared_vocabulary.json in $dst.tmp"
      rm -rf "$dst"
      mv "$dst.tmp" "$dst"
      say "   converted in $(( $(date +%s) - t0 ))s"
    done
  done
  step_end
fi

# ---- our bench ------------------------------------------------------------------------
NMT_BIN=
if has 'tarjuma-*'; then
  step_start "building tarjuma's bench (cargo bench --bench nmt --no-run)"
  command -v cargo >/dev/null || die "cargo is required"
  (cd "$REPO" && cargo bench --bench nmt --no-run --message-format=json-render-diagnostics) \
    >"$LOG_DIR/cargo-build.jsonl" || die "cargo bench --bench nmt --no-run failed (diagnostics above)"
  NMT_BIN=$("$BENCH_PY" - "$LOG_DIR/cargo-build.jsonl" <<'EOF'
import json, sys
exe = None
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and t.get("name") == "nmt" and m.get("executable"):
        exe = m["executable"]
print(exe or "")
EOF
)
  [[ -n $NMT_BIN && -x $NMT_BIN ]] || die "could not find the built nmt bench executable (see $LOG_DIR/cargo-build.jsonl)"
  say "bench binary: $NMT_BIN"
  step_end
fi

if [[ $PREPARE_ONLY == 1 ]]; then
  say "PREPARE_ONLY=1: models and bench ready, stopping (total $(( $(date +%s) - T_ALL ))s)"
  exit 0
fi

# ---- timing runs ----------------------------------------------------------------------
wait_quiet() {
  local wq=$BENCH_DIR/wait_quiet.sh
  [[ -f $wq && $QUIET_MAX_S -gt 0 ]] || return 0
  # wait_quiet.sh samples 5 s at a time and gives up after its max wait; bound it anyway.
  local msg
  msg=$(timeout $(( QUIET_MAX_S + 30 )) bash "$wq" "$QUIET_CORES" "$QUIET_MAX_S" 2>&1) \
    || say "   machine not idle (${msg:-wait_quiet timed out}); running anyway, see foreign_busy_cores"
}

FAILED=()
run_variant() { # model-key batch n variant round [beams]
  local m=$1 b=$2 n=$3 v=$4 r=$5 beams=${6:-1} name label log cmd=()
  name=$(model_name "$m")
  label="$RUN_ID:$m:b$b:$v:r$r"
  log=$LOG_DIR/$m-b$b-$v-r$r.log
  local extra=(--reps "$REPS")
  # Beam search against greedy in one process, tabled apart (bench-nmt-table.py).
  if (( beams > 1 )); then
    label="$RUN_ID:$m:b$b:$v:vsgreedy:beams$beams"
    log=$LOG_DIR/$m-b$b-$v-vsgreedy-beams$beams.log
    extra=(--reps "$BEAM_PAIRS" --beams "$beams" --vs-greedy)
  fi
  local common=(--batch "$b" --threads "$THREADS" --src-len "$SRC_LEN" --tgt-len "$TGT_LEN"
                --n "$n" --label "$label" "${extra[@]}")
  case $v in
    hf) cmd=("$BENCH_PY" "$BENCH_DIR/seq2seq_bench.py" --engine hf --model "$MODELS_DIR/$name" --kind "$m") ;;
    ct2-fp32) cmd=("$BENCH_PY" "$BENCH_DIR/seq2seq_bench.py" --engine ct2 --model "$MODELS_DIR/ct2/$name-fp32"
                   --kind "$m" --compute-type float32) ;;
    ct2-int8) cmd=("$BENCH_PY" "$BENCH_DIR/seq2seq_bench.py" --engine ct2 --model "$MODELS_DIR/ct2/$name-int8"
                   --kind "$m" --compute-type int8) ;;
    tarjuma-f32) cmd=("$NMT_BIN" --model "$MODELS_DIR/$name" --kind "$m" --quantize none) ;;
    tarjuma-int8) cmd=("$NMT_BIN" --model "$MODELS_DIR/$name" --kind "$m" --quantize int8) ;;
    tarjuma-q8_0) cmd=("$NMT_BIN" --model "$MODELS_DIR/$name" --kind "$m" --quantize q8_0) ;;
  esac
  cmd+=("${common[@]}")
  wait_quiet
  local t0 rc=0 line
  t0=$(date +%s)
  if (( beams > 1 )); then say "$m b=$b n=$n $v: greedy and beams $beams, $BEAM_PAIRS pairs ..."; else say "$m b=$b n=$n $v (round $r) ..."; fi
  printf '%q ' "${cmd[@]}" >"$log"; echo >>"$log"
  (cd "$REPO" && "${cmd[@]}") >>"$log" 2>&1 || rc=$?
  line=$(grep -E '^\{' "$log" | tail -n 1 || true)
  if (( rc != 0 )) || [[ -z $line ]]; then
    say "   FAILED ($v, $m, batch $b, exit $rc); last lines of $log:"
    tail -n 15 "$log" | sed 's/^/     | /' >&2
    FAILED+=("$m/b$b/$v(rc=$rc)")
    return 0
  fi
  # Every line names the CPU and the kernel (tarjuma's bench records its own).
  line=$(printf '%s' "$line" | "$BENCH_PY" -c '
import json, sys
r = json.load(sys.stdin)
if "cpu" not in r:
    info = open("/proc/cpuinfo").read().splitlines()
    get = lambda k: next((l.split(":", 1)[1].strip() for l in info if l.split(":")[0].strip() == k), "unknown")
    flags = set(get("flags").split())
    isa = [f for f in ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    r["cpu"] = {"model": get("model name"), "vendor": get("vendor_id"), "isa": isa}
if "kernel" not in r:
    if r.get("engine") == "ct2":
        import ctranslate2
        r["kernel"] = "ctranslate2 %s %s (its best ISA for this CPU; MKL/oneDNN on Intel)" % (ctranslate2.__version__, r.get("compute_type"))
    else:
        import torch
        r["kernel"] = "torch %s (%s)" % (torch.__version__, torch.backends.cpu.get_cpu_capability())
print(json.dumps(r))')
  printf '%s\n' "$line" >>"$OUT"
  say "   $(printf '%s' "$line" | "$BENCH_PY" -c '
import json, sys
r = json.load(sys.stdin)
if r.get("vs_greedy"):
    print("beam / greedy %s (median %.3f)  foreign_busy_cores %s" % (r["ratio_reps"], r["ratio_median"], r["foreign_busy_cores"]))
else:
    print("tok/s %.1f +- %.1f  foreign_busy_cores %s" % (r["tok_s_mean"], r["tok_s_stdev"], r["foreign_busy_cores"]))') ($(( $(date +%s) - t0 ))s)"
}

say "run $RUN_ID: models [$MODELS] batches [$BATCHES] engines [${VARIANTS[*]}] reps $REPS rounds $ROUNDS threads $THREADS"
say "results -> $OUT   logs -> $LOG_DIR"
for m in $MODELS; do
  for b in $BATCHES; do
    if [[ -n ${N:-} ]]; then n=$N; elif (( b >= 16 )); then n=64; else n=16; fi
    step_start "$m batch $b (n=$n)"
    for ((r = 1; r <= ROUNDS; r++)); do
      for v in "${VARIANTS[@]}"; do
        run_variant "$m" "$b" "$n" "$v" "$r"
      done
    done
    step_end
  done
done

# Beam search at batch 1 against greedy, same engine, one process: every sequence is
# decoded both ways back to back, the order alternating, so that a drift in the machine's
# bandwidth (2× within minutes on one VM) falls on both sides.
if (( BEAM_PAIRS > 0 )); then
  for m in $MODELS; do
    if [[ -n ${BEAM_N:-} ]]; then n=$BEAM_N; elif [[ $m == nllb ]]; then n=8; else n=16; fi
    for v in tarjuma-f32 tarjuma-int8; do
      has "$v" || continue
      step_start "$m batch 1, $v: beam $BEAMS against greedy, $BEAM_PAIRS pairs (n=$n)"
      run_variant "$m" 1 "$n" "$v" 1 "$BEAMS"
      step_end
    done
  done
fi

# ---- table ----------------------------------------------------------------------------
echo
if [[ -s $OUT ]] && grep -qF "\"$RUN_ID:" "$OUT"; then
  "$BENCH_PY" "$REPO/scripts/bench-nmt-table.py" "$OUT" --label-prefix "$RUN_ID:" \
    || say "could not print the table from $OUT"
else
  say "no results recorded in this run"
fi
say "total $(( $(date +%s) - T_ALL ))s; results in $OUT"
if (( ${#FAILED[@]} > 0 )); then
  say "FAILED runs: ${FAILED[*]} (logs in $LOG_DIR)"
  exit 1
fi
