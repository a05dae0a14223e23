#!/usr/bin/env bash
# Installs the real clients the interoperability tests drive, into DEST (a
# folder in the build tree), from the npm registry:
#   llama     node-llama-cpp with the llama.cpp build it ships prebuilt for linux-x64
#   openai    the official OpenAI client
# Usage: install_clients.sh DEST llama|openai
# Exit 0 when the client is there (installed now or before); non-zero when
# it cannot be had (no npm, no registry), and the tests that need it skip.
set -euo pipefail

dest=$1
what=$2
case "$what" in
  llama) packages=(node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1); probe=node-llama-cpp ;;
  openai) packages=(openai@6.30.1); probe=openai ;;
  *) echo "install_clients: unknown client '$what' (llama or openai)" >&2; exit 2 ;;
esac
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ] && [ "$what" = llama ]; then
  echo "install_clients: the prebuilt llama.cpp of node-llama-cpp is used for linux-x64 only" >&2
  exit 3
fi
command -v npm >/dev/null || { echo "install_clients: npm is not installed" >&2; exit 3; }

dir="$dest/$what"
mkdir -p "$dir"
# Several test processes may ask at once: one installs, the others wait.
exec 9>"$dir/.lock"
flock 9
if [ -f "$dir/node_modules/$probe/package.json" ]; then exit 0; fi
cd "$dir"
[ -f package.json ] || echo '{"name": "crucible-test-clients", "private": true, "type": "module"}' >package.json
# No install scripts (node-llama-cpp's would try to download or build
# llama.cpp) and no optional packages (its CUDA and Vulkan builds are
# hundreds of megabytes); the CPU build for linux-x64 is named explicitly.
timeout 600 npm install --no-audit --no-fund --ignore-scripts --omit=optional --loglevel=error "${packages[@]}"
test -f "node_modules/$probe/package.json"
