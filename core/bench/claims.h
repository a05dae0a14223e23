// The claims table: every number the text this project grew from asserts,
// beside what this machine measured and a verdict. Each verdict is computed
// from measured rows (suite.h), never from constants: with no rows for a
// claim its verdict is not_measured.
#pragma once

#include "core/bench/suite.h"

#include <map>
#include <span>
#include <string>
#include <vector>

namespace crucible::bench {

enum class Verdict { holds, does_not_hold, depends_on_size, not_measured };
std::string_view to_string(Verdict v);

struct Claim {
    std::string id;          // "rmsnorm_vs_layernorm"
    std::string text;        // "RMSNorm 20% faster than LayerNorm"
    std::string suite;       // the suite whose rows decide it (and whose chart it links to)
    std::string metric;      // the chart's metric
};
const std::vector<Claim>& claims();

struct ClaimResult {
    Claim claim;
    Verdict verdict = Verdict::not_measured;
    double value = 0.0;          // the measured figure (a ratio, a percentage), at the largest size
    std::string measured;        // "1.31× faster at C=4096", "75% less KV cache"
    std::string turns_at;        // with depends_on_size: "holds from T=2048"
    std::map<std::string, std::string> tags;   // the chart the row links to
};

// One result per claim, in claims() order.
std::vector<ClaimResult> evaluate_claims(std::span<const Row> rows);

} // namespace crucible::bench
