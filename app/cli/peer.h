// The PyTorch peers live in core/bench (the app runs them too); the CLI's
// commands name them from here.
#pragma once

#include "core/bench/peer.h"

namespace crucible::cli {
using crucible::find_peer_script;
using crucible::peer_python;
using crucible::run_peer;
} // namespace crucible::cli
