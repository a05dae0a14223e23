#!/usr/bin/env bash
# Installs everything Crucible needs to build, run and test, on Debian 12 or
# Ubuntu 24.04. Idempotent: packages already present are left alone.
# The CUDA backend additionally needs the CUDA Toolkit (nvcc, cuBLAS), which
# comes from NVIDIA's repositories, not from here; without it the build is
# CPU-only.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  build-essential cmake ninja-build pkg-config git
  qt6-base-dev qt6-charts-dev libqt6opengl6-dev libgl-dev
  nlohmann-json3-dev libfmt-dev libcli11-dev
  libsentencepiece-dev libopenblas-openmp-dev
  libcpp-httplib-dev
  xvfb xauth
  python3 python3-numpy
)
# PyTorch is the peer of the parity tests and benchmarks; the tests skip
# without it, so it is installed where the distribution has it.
optional=(python3-torch)

missing=()
for p in "${packages[@]}" "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: everything is already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
required_missing=()
for p in "${missing[@]}"; do
  case " ${optional[*]} " in *" $p "*) ;; *) required_missing+=("$p");; esac
done
if [ "${#required_missing[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${required_missing[@]}"
fi
for p in "${optional[@]}"; do
  if apt-cache show "$p" >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends "$p" || echo "install-deps: optional $p not installed"
  else
    echo "install-deps: optional $p is not available here; the PyTorch parity tests will be skipped"
  fi
done
echo "install-deps: done"
