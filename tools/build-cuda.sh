#!/usr/bin/env bash
# Builds target/release/arenaxl with `--features cuda` (CUDA 13.0, compute capability 90:
# H100/H200) on a machine with no GPU and no system CUDA: the toolchain comes from the
# Python package registry (tools/cuda-env.sh). Run from anywhere; safe to rerun.
#
#   tools/build-cuda.sh                  # CUDA_COMPUTE_CAP=80 tools/build-cuda.sh for A100
#
# At run time the binary needs the NVIDIA driver (libcuda.so.1; driver >= 580 for CUDA 13.0)
# and libcublas.so.13 (with libcublasLt.so.13), libcurand.so.10, libcudart.so.13 on the loader's
# path: docs/engine.md ("The CUDA build") says where to find them.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda-env.sh
cuda_env_setup
nvcc --version | tail -2
cargo build --release --features cuda --bin arenaxl
echo "built $(pwd)/target/release/arenaxl (cuda, compute capability $CUDA_COMPUTE_CAP)"
echo "needs at run time: $(ldd target/release/arenaxl | awk '/cuda|cublas|curand|nvrtc/ {print $1}' | tr '\n' ' ')"
