#!/usr/bin/env bash
# The main job: install, then train, sample and evaluate the synthetic task (results in runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/ddm run --config configs/synthetic_cpu.yaml "$@"
