#!/usr/bin/env bash
# Create .venv (if needed) and install the project into it: torch first, pinned, so
# that pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
bash scripts/install_sim.sh  # system GL libraries for offscreen rendering (no-op when present)
stamp=.venv/.ddm-installed
want=$(cat pyproject.toml scripts/install.sh scripts/install_sim.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
  # Data packages whose declared dependencies are stale (molsets) or pull tensorflow (animal-mnist):
  # we read their files only.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps molsets==0.3.1 animal-mnist==0.4
  echo "$want" > "$stamp"
fi
