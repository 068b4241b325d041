#!/usr/bin/env bash
# One table of what the paper's claims need, on a bare GPU machine: the NVIDIA driver, the
# CUDA 13 libraries and Python with PyTorch, but no Rust and no network. Give it the binary
# tools/build-cuda.sh made.
#
#   tools/gpu-check.sh --bin ./arenaxl [--device cuda:0] [--out DIR]        # full size, ~8 min on an H100
#   tools/gpu-check.sh --bin target/debug/arenaxl --device cpu --presets tiny   # CPU dry run (CI)
#
# Writes random-weight SDXL, SSD-1B and Vega pipelines (`arenaxl model init`, f16, ~12 GB at
# full size) under DIR/models (kept between runs), then prints one Markdown table: the UNet
# call (batch 2 = one guided step) in f16 and bf16, a 20-step generation, peak GPU memory,
# SSD-1B's and Vega's speed-up over SDXL, the same UNet in PyTorch diffusers when it can be
# imported, one distillation step SDXL -> SSD-1B at batch 1 and 2 in bf16, and whether the
# images are finite (a NaN from the f16 VAE decodes to a flat image). Everything but the
# weights stays under a few MB. The table is also written to DIR/table.md.
set -euo pipefail

BIN="" DEVICE="cuda:0" PRESETS="full" OUT="gpu-check" PYTHON="${PYTHON:-python3}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --device) DEVICE="$2"; shift 2 ;;
        --presets) PRESETS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
    esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
[[ -n "$BIN" ]] || BIN="$HERE/../target/release/arenaxl"
[[ -x "$BIN" ]] || { echo "gpu-check: $BIN is not an executable (build it with tools/build-cuda.sh)" >&2; exit 2; }

case "$PRESETS" in
    full) MODELS=(sdxl ssd-1b vega); SIZE=1024; DTYPES=(f16 bf16); ITERS=5; PLAN=ssd-1b ;;
    # tiny-sdxl's depths (1/2/3) are below SSD-1B's plan; the Vega plan fits it.
    tiny) MODELS=(tiny-sdxl tiny-ssd-1b tiny-vega); SIZE=64; DTYPES=(f16 bf16); ITERS=2; PLAN=vega ;;
    *) echo "gpu-check: --presets full|tiny" >&2; exit 2 ;;
esac
STEPS=20
LATENT=$((SIZE / 8))
if [[ "$DEVICE" == cpu ]]; then
    # candle's CPU matmul has no bf16 kernel: the dry run times f32 in its place.
    DTYPES=(f16 f32)
    STEPS=2
fi
mkdir -p "$OUT/models" "$OUT/images"
start_all=$(date +%s)

# Peak GPU memory of one command: nvidia-smi sampled every 100 ms while it runs.
PEAK_FILE="$OUT/.peak"
run_measured() {
    local sampler=""
    if [[ "$DEVICE" == cuda* ]] && command -v nvidia-smi >/dev/null 2>&1; then
        local idx="${DEVICE#cuda:}"; [[ "$idx" == cuda ]] && idx=0
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$idx" -lms 100 >"$PEAK_FILE" 2>/dev/null &
        sampler=$!
    else
        : >"$PEAK_FILE"
    fi
    local status=0
    "$@" || status=$?
    if [[ -n "$sampler" ]]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    return "$status"
}
peak_mib() { sort -n "$PEAK_FILE" 2>/dev/null | tail -1 | tr -d ' ' | grep . || echo "n/a"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

for m in "${MODELS[@]}"; do
    if [[ ! -f "$OUT/models/$m/model_index.json" ]]; then
        echo "gpu-check: writing $m" >&2
        "$BIN" model init --preset "$m" --out "$OUT/models/$m" >/dev/null
    fi
done

ROWS=()
declare -A UNET_MS
for m in "${MODELS[@]}"; do
    for dt in "${DTYPES[@]}"; do
        run_measured "$BIN" bench unet --unet-dir "$OUT/models/$m/unet" --device "$DEVICE" --dtype "$dt" \
            --batch 2 --height "$SIZE" --width "$SIZE" --iters "$ITERS" --json >"$OUT/.unet.json"
        ms=$(sed -n 's/.*"median_ms":\([0-9.eE+-]*\).*/\1/p' "$OUT/.unet.json")
        UNET_MS["$m/$dt"]="$ms"
        ROWS+=("| UNet call, batch 2, ${LATENT}x${LATENT} latents | $m | $dt | $(printf '%.1f' "$ms") ms | $(peak_mib) |")
    done
done

# Speed-up over SDXL in the first dtype: the paper's "60 % / 100 % faster" (A100).
base="${UNET_MS[${MODELS[0]}/${DTYPES[0]}]}"
for m in "${MODELS[@]:1}"; do
    pct=$(awk -v a="$base" -v b="${UNET_MS[$m/${DTYPES[0]}]}" 'BEGIN { printf "%+.0f %%", (a / b - 1) * 100 }')
    ROWS+=("| speed-up over ${MODELS[0]} (UNet call) | $m | ${DTYPES[0]} | $pct | |")
done

# 20-step generations; a finite image has spread, a NaN one decodes flat.
for m in "${MODELS[@]}"; do
    img="$OUT/images/$m.png"
    t0=$(now)
    run_measured "$BIN" generate --model "$OUT/models/$m" --prompt "a photo of a cat" --steps "$STEPS" \
        --width "$SIZE" --height "$SIZE" --dtype "${DTYPES[0]}" --device "$DEVICE" --out "$img" >/dev/null
    t1=$(now)
    # NaN latents become a flat image, which PNG compresses to almost nothing; the
    # random-weight models' noise-like images do not compress.
    bytes=$(stat -c %s "$img")
    if (( bytes * 20 > SIZE * SIZE * 3 )); then check="finite (PNG $bytes B)"; else check="FLAT, NaN? (PNG $bytes B)"; fi
    ROWS+=("| $STEPS-step generation ${SIZE}x${SIZE}, load included | $m | ${DTYPES[0]} | $(secs "$t0" "$t1") s | $(peak_mib) | $check |")
done

# The same UNet in PyTorch diffusers, when it is there.
if "$PYTHON" -c "import torch, diffusers" >/dev/null 2>&1; then
    for m in "${MODELS[@]}"; do
        torch_dev="$DEVICE"; [[ "$DEVICE" == cpu ]] || torch_dev="cuda:${DEVICE#cuda:}"
        ms=$("$PYTHON" "$HERE/gpu_check_torch.py" "$OUT/models/$m/unet" --device "$torch_dev" \
            --dtype "${DTYPES[0]}" --size "$SIZE" --iters "$ITERS")
        ratio=$(awk -v a="${UNET_MS[$m/${DTYPES[0]}]}" -v b="$ms" 'BEGIN { printf "%.2f", a / b }')
        ROWS+=("| UNet call in PyTorch diffusers (arenaxl / PyTorch time) | $m | ${DTYPES[0]} | $(printf '%.1f' "$ms") ms (ratio $ratio) | |")
    done
else
    ROWS+=("| UNet call in PyTorch diffusers | — | — | skipped: torch + diffusers not importable by $PYTHON | |")
fi

# One distillation step SDXL -> SSD-1B (bf16 on a GPU), batch 1 and 2.
train_dt="bf16"; [[ "$DEVICE" == cpu ]] && train_dt="f16"
for b in 1 2; do
    run_measured "$BIN" bench distill --teacher "$OUT/models/${MODELS[0]}" --plan "$PLAN" --batch "$b" \
        --latent "$LATENT" --steps 2 --device "$DEVICE" --dtype "$train_dt" >"$OUT/.distill.txt"
    sps=$(sed -n 's/^candle: \([0-9.]*\) steps\/s.*/\1/p' "$OUT/.distill.txt")
    per=$(awk -v s="$sps" 'BEGIN { printf "%.2f", 1 / s }')
    ROWS+=("| distillation step ${MODELS[0]} -> $PLAN, ${SIZE}x${SIZE}, batch $b | ${MODELS[0]} | $train_dt | $per s | $(peak_mib) |")
done

{
    echo "arenaxl gpu-check on $DEVICE ($("$BIN" --version 2>/dev/null || echo arenaxl)), presets $PRESETS, $(date -u +%Y-%m-%dT%H:%MZ)"
    if [[ "$DEVICE" == cuda* ]] && command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    fi
    echo
    echo "| measurement | model | dtype | result | peak GPU MiB | images |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "total $(( $(date +%s) - start_all )) s"
} | tee "$OUT/table.md"
rm -f "$OUT/.peak" "$OUT/.unet.json" "$OUT/.distill.txt"
