#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and TensorRT 10: builds the TensorRT fp16 plans of a
# checkpoint (default: ViT-B/16 384x128 with random weights: speed does not depend on the weights), runs
# the parity gate through the SDK's own TensorRT runner (export.trt does), then benchmarks.encoders for
# torch eager / onnxruntime CUDA / TensorRT at batch 1, 32 and 256. One command, under 8 minutes, JSON in
# benchmarks/results/gpu/.
#
#   benchmarks/gpu_check.sh [CKPT_DIR]
#
# Without a GPU or TensorRT it exits 2 with one line, having changed nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU here (nvidia-smi finds none); the GPU check needs one" >&2
    exit 2
fi
if ! "$PY" -c "import tensorrt" >/dev/null 2>&1; then
    echo "error: TensorRT is not importable by $PY (pip install tensorrt-cu12 cuda-python)" >&2
    exit 2
fi
WORK="${WORK:-$(mktemp -d /tmp/sen_gpu_check.XXXXXX)}"
CKPT="${1:-$WORK/ckpt}"
export SEN_BENCH_RESULTS="${SEN_BENCH_RESULTS:-benchmarks/results/gpu}"
export HF_HUB_OFFLINE=1
started=$(date +%s)
if [ -z "${1:-}" ]; then
    "$PY" -m benchmarks.random_checkpoint --preset sen-vit-b-16 --out "$CKPT"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 300 "$PY" -m export.trt --ckpt "$CKPT" --out "$WORK/engine" --max-batch 256 --force
timeout 150 "$PY" -m benchmarks.encoders --engine "$WORK/engine" --ckpt "$CKPT" --batches 1 32 256 --repeats 10
echo "gpu check done in $(( $(date +%s) - started )) s; results in $SEN_BENCH_RESULTS, work dir $WORK"
