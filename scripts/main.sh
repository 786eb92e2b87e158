#!/usr/bin/env bash
# The main job: install, then fit the image tokenizer, train class-conditional diffusion on MNIST tokens, evaluate it against an autoregressive baseline, write pictures (results in runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/ddm run --config configs/tasks/image_mnist_cpu.yaml "$@"
