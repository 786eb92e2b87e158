#!/usr/bin/env bash
# Install the robot simulator for tasks/vla: MetaWorld (mujoco) into .venv and the
# Debian GL libraries that mujoco needs to render offscreen on a CPU (EGL or OSMesa).
# Safe to run again: apt is only called for packages that are missing, pip only when
# the pinned version is not there yet.
set -euo pipefail
cd "$(dirname "$0")/.."

GL_PACKAGES=(libosmesa6 libegl1 libgl1 libgles2 libegl-mesa0 libgl1-mesa-dri)
METAWORLD=metaworld==3.1.1

missing=()
for pkg in "${GL_PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "install_sim.sh: missing GL packages ${missing[*]} and no apt-get to install them" >&2
    exit 1
  fi
  # sudo only where we are not root already (containers often have no sudo at all).
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
  fi
  echo "install_sim.sh: installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "install_sim.sh: no .venv here; run scripts/install.sh first" >&2
  exit 1
fi
# metaworld 3.1.1 imports `packaging` without declaring it.
if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("metaworld") != "3.1.1")' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "$METAWORLD" packaging
fi
