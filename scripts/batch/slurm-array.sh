#!/usr/bin/env bash
# (Slurm reads #SBATCH lines only before the first command, so they come first.)
#SBATCH --job-name=tarjuma
#SBATCH --cpus-per-task=4
#SBATCH --mem=6G
#SBATCH --time=08:00:00
#SBATCH --output=tarjuma-%A_%a.log
# SIGTERM two minutes before the time limit: tarjuma finishes the article in flight
# (up to --grace-period), writes run.json and exits 143; a resubmission resumes.
#SBATCH --signal=B:TERM@120
# A preempted or failed-node task goes back in the queue and resumes its shard.
#SBATCH --requeue
# tarjuma on a Slurm job array: task I of N takes shard I (articles chosen by a stable
# hash of their id; tarjuma reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and
# SLURM_ARRAY_TASK_MIN itself), writes its own output directory, and resumes where it
# stopped when it is requeued or resubmitted. A dependent job merges the shards.
#
#   bash scripts/batch/slurm-array.sh            # on a login node: fetch, submit, merge
#
# Run directly, the script fetches the models into the shared cache (login nodes usually
# have the network), then submits itself as the array and a merge job that runs when the
# whole array has ended. Under sbatch it is one array task.
#
# Edit these to yours (or set them in the environment). The cache and the data must be on a filesystem every node sees.
IN=${IN:-$HOME/news/in}                     # articles: .txt/.md/.html/.jsonl, or a folder
OUT=${OUT:-$HOME/news/out}                  # OUT/shard-I per task, OUT/merged at the end
export TARJUMA_CACHE=${TARJUMA_CACHE:-$HOME/.cache/tarjuma}   # the shared model cache
export HF_HOME=${HF_HOME:-$HOME/.cache/huggingface}
SHARDS=${SHARDS:-8}
MODEL=${MODEL:-qwen2.5-coder-0.5b-instruct}
TRANSLATOR=${TRANSLATOR:-nllb-200-distilled-600m}
TARJUMA=${TARJUMA:-tarjuma}                 # the binary (target/release/tarjuma)


set -euo pipefail

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    # On the login node: fill the cache, then submit the array and the merge.
    "$TARJUMA" models fetch "$MODEL"
    "$TARJUMA" models fetch "$TRANSLATOR"
    mkdir -p "$OUT"
    export IN OUT SHARDS MODEL TRANSLATOR TARJUMA
    array=$(sbatch --parsable --array="0-$((SHARDS - 1))" --export=ALL "$0")
    merge=$(sbatch --parsable --dependency="afterany:$array" --export=ALL \
        --job-name=tarjuma-merge --output="tarjuma-merge-%j.log" --time=01:00:00 \
        --wrap "\"$TARJUMA\" merge \"$OUT\"/shard-* --out \"$OUT/merged\" --inputs \"$IN\"")
    echo "submitted array job $array (${SHARDS} shards) and merge job $merge"
    echo "results: $OUT/merged/results.jsonl; per-shard state: $OUT/shard-*/run.json"
    exit 0
fi

# One array task. `exec` so that Slurm's SIGTERM reaches tarjuma itself. Exit codes: 0 all
# ok, 1 some articles failed (recorded with reasons), 2 usage/configuration, 130/143
# stopped by a signal (resubmit the same array to resume).
exec "$TARJUMA" run "$IN" \
    --out "$OUT/shard-${SLURM_ARRAY_TASK_ID}" \
    --offline \
    --model "$MODEL" \
    --translator "$TRANSLATOR" --quantize int8 \
    --threads "${SLURM_CPUS_PER_TASK:-4}" \
    --grace-period 90 \
    --progress-every 60
