#!/usr/bin/env bash
# Peak RSS of `tarjuma run` for 10 and for 2,000 short articles (tiny translator and
# summarizer), printed as a Markdown table with the CPU it ran on. Articles are streamed,
# so the two must be within 10 %. Usage: bash scripts/batch-rss.sh [N ...]
# PROFILE=dev reuses the test build instead of building the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
lscpu | sed -n 's/^Model name: *//p' | head -1 | sed 's/^/CPU: /'
[ $# -gt 0 ] || set -- 10 2000
cargo bench --profile "${PROFILE:-bench}" --bench batch_rss -- "$@"
