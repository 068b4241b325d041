#!/usr/bin/env bash
# CI: `cargo check --features cuda`, so that the GPU path cannot rot on machines without a
# GPU. Idempotent and incremental: the pinned CUDA packages (tools/cuda-env.sh) and a target
# directory of its own live under $HOME/.cache/arenaxl-cuda and are reused between runs.
# A cold run takes about 8 minutes on 2 cores (candle-kernels compiles its CUDA kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda-env.sh
cuda_env_setup
export CARGO_TARGET_DIR="$ARENAXL_CUDA_CACHE/target"
start=$(date +%s)
cargo check --features cuda
echo "ci-cuda-check: cargo check --features cuda passed in $(( $(date +%s) - start )) s"
