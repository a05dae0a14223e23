#!/usr/bin/env bash
# Starts Crucible from a build tree: the desktop app when a display is
# available, otherwise the command-line demo (the same engine, headless).
#   packaging/run.sh [build-dir]
set -euo pipefail
build=${1:-build}
bin="$build/bin"
if [ ! -x "$bin/crucible-cli" ]; then
  echo "run.sh: $bin/crucible-cli not found; build first: cmake -S . -B $build -G Ninja && cmake --build $build" >&2
  exit 1
fi
if { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } && [ -x "$bin/crucible" ]; then
  exec "$bin/crucible"
fi
if [ -x "$bin/crucible" ]; then
  echo "No display found: running the command-line demo instead of the desktop app."
else
  echo "The desktop app was not built (Qt 6 Widgets/Charts missing): running the command-line demo."
fi
exec "$bin/crucible-cli" demo
