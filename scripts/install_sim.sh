#!/usr/bin/env bash
# The Debian GL libraries that mujoco (MetaWorld, tasks/vla) needs to render offscreen on
# a CPU (EGL or OSMesa); MetaWorld itself is a Python dependency in pyproject.toml.
# Called by scripts/install.sh. Safe to run again: apt runs only for missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."

GL_PACKAGES=(libosmesa6 libegl1 libgl1 libgles2 libegl-mesa0 libgl1-mesa-dri)

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
