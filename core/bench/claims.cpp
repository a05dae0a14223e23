#include "core/bench/claims.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace crucible::bench {

std::string_view to_string(Verdict v)
{
    switch (v) {
    case Verdict::holds: return "holds";
    case Verdict::does_not_hold: return "does not hold";
    case Verdict::depends_on_size: return "depends on size";
    case Verdict::not_measured: break;
    }
    return "not measured";
}

const std::vector<Claim>& claims()
{
    static const std::vector<Claim> all = {
        {"rmsnorm", "RMSNorm 20% faster than LayerNorm", "norms", "ms"},
        {"flash_attention", "Flash attention 2–5× faster, 2–3× less memory", "attention", "ms"},
        {"gqa", "GQA 75% memory reduction", "gqa", "cache_bytes"},
        {"muon", "Muon 30–50% faster convergence", "optimizers", "bpb"},
        {"lora", "LoRA 1000× fewer parameters, 8× less memory", "finetune", "bytes"},
        {"kv_cache", "KV cache O(n²) → O(n)", "kv_cache", "tok_s"},
    };
    return all;
}

namespace {

// One size at which a claim was checked.
struct SizePoint {
    double x = 0;
    bool holds = false;
    double value = 0;
    std::string text;
};

// All sizes hold: holds; none: does not; a mix: depends on size, with the
// size from which it holds (or up to which it does).
// The headline value is the largest size's, or the smallest's where smaller
// is the stronger case (fewer kv-heads, lower LoRA rank).
void conclude(ClaimResult& r, std::vector<SizePoint> points, const std::string& x_name, bool headline_smallest = false)
{
    if (points.empty()) return;
    std::sort(points.begin(), points.end(), [](const SizePoint& a, const SizePoint& b) { return a.x < b.x; });
    const SizePoint& last = headline_smallest ? points.front() : points.back();
    r.value = last.value;
    r.measured = last.text;
    const size_t held = size_t(std::count_if(points.begin(), points.end(), [](const SizePoint& p) { return p.holds; }));
    if (held == points.size()) r.verdict = Verdict::holds;
    else if (held == 0) r.verdict = Verdict::does_not_hold;
    else {
        r.verdict = Verdict::depends_on_size;
        // The smallest size from which every larger one holds, else the
        // largest up to which every smaller one does.
        size_t from = points.size();
        while (from > 0 && points[from - 1].holds) --from;
        if (from < points.size()) r.turns_at = fmt::format("holds from {}={:g}", x_name, points[from].x);
        else {
            size_t upto = 0;
            while (upto < points.size() && points[upto].holds) ++upto;
            r.turns_at = upto > 0 ? fmt::format("holds up to {}={:g}", x_name, points[upto - 1].x)
                                  : std::string("holds at some sizes only");
        }
    }
}

using Rows = std::span<const Row>;

// Rows of a suite grouped by their tags (one chart each).
std::map<std::map<std::string, std::string>, std::vector<const Row*>> by_tags(Rows rows, const std::string& suite)
{
    std::map<std::map<std::string, std::string>, std::vector<const Row*>> out;
    for (const Row& r : rows)
        if (r.suite == suite) out[r.tags].push_back(&r);
    return out;
}

std::optional<double> value_at(const std::vector<const Row*>& rows, const std::string& series, double x,
                               const std::string& key)
{
    for (const Row* r : rows)
        if (r->series == series && r->x == x)
            if (auto v = r->get(key)) return v;
    return std::nullopt;
}

std::set<double> xs(const std::vector<const Row*>& rows, const std::string& series)
{
    std::set<double> out;
    for (const Row* r : rows)
        if (r->series == series) out.insert(r->x);
    return out;
}

// The group (chart) whose conclusion the table shows: the one with the most
// points (ties: the last in tag order, e.g. forward+backward over forward).
template <class F>
void evaluate_groups(ClaimResult& r, Rows rows, const std::string& x_name, F&& points_of, bool headline_smallest = false)
{
    size_t best = 0;
    for (const auto& [tags, group] : by_tags(rows, r.claim.suite)) {
        std::vector<SizePoint> points = points_of(group);
        if (points.empty() || points.size() < best) continue;
        best = points.size();
        ClaimResult candidate;
        candidate.claim = r.claim;
        candidate.tags = tags;
        conclude(candidate, std::move(points), x_name, headline_smallest);
        // Say which chart decided it when a suite has several.
        std::string which;
        for (const auto& [k, v] : tags) which += (which.empty() ? "" : ", ") + k + " " + v;
        if (!which.empty()) candidate.measured += " (" + which + ")";
        r = candidate;
    }
}

void rmsnorm(ClaimResult& r, Rows rows)
{
    evaluate_groups(r, rows, "C", [](const std::vector<const Row*>& g) {
        std::vector<SizePoint> pts;
        for (double x : xs(g, "rmsnorm")) {
            const auto rms = value_at(g, "rmsnorm", x, "ms"), ln = value_at(g, "layernorm", x, "ms");
            if (!rms || !ln || *rms <= 0) continue;
            const double faster = *ln / *rms - 1.0;
            pts.push_back({x, faster >= 0.2, 100.0 * faster,
                           fmt::format("{:+.0f}% at C={:g}", 100.0 * faster, x)});
        }
        return pts;
    });
}

void flash(ClaimResult& r, Rows rows)
{
    evaluate_groups(r, rows, "T", [](const std::vector<const Row*>& g) {
        std::vector<SizePoint> pts;
        for (double x : xs(g, "naive")) {
            const auto nf = value_at(g, "naive", x, "ms"), ff = value_at(g, "flash", x, "ms");
            const auto nm = value_at(g, "naive", x, "peak_bytes"), fm = value_at(g, "flash", x, "peak_bytes");
            if (!nf || !ff || !nm || !fm || *ff <= 0 || *fm <= 0) continue;
            const double speed = *nf / *ff, memory = *nm / *fm;
            pts.push_back({x, speed >= 2.0 && memory >= 2.0, speed,
                           fmt::format("{:.2f}× faster, {:.2f}× less memory at T={:g}", speed, memory, x)});
        }
        return pts;
    });
}

void gqa(ClaimResult& r, Rows rows)
{
    evaluate_groups(r, rows, "kv_heads", [](const std::vector<const Row*>& g) {
        std::vector<SizePoint> pts;
        const std::set<double> heads = xs(g, "kv_cache");
        if (heads.size() < 2) return pts;
        const double mha = *heads.rbegin();
        const auto full = value_at(g, "kv_cache", mha, "cache_bytes");
        if (!full || *full <= 0) return pts;
        for (double kv : heads) {
            if (kv == mha) continue;
            const auto b = value_at(g, "kv_cache", kv, "cache_bytes");
            if (!b) continue;
            const double reduction = 1.0 - *b / *full;
            pts.push_back({kv, reduction >= 0.745, 100.0 * reduction,
                           fmt::format("{:.0f}% less KV cache at {:g} kv-heads (of {:g})", 100.0 * reduction, kv, mha)});
        }
        return pts;
    }, true);
}

// Mean validation bits/byte of a series at each step, over seeds.
std::map<double, double> mean_curve(Rows rows, const std::string& series)
{
    std::map<double, std::pair<double, int>> sum;
    for (const Row& r : rows)
        if (r.suite == "optimizers" && r.series == series && r.x_name == "step")
            if (auto v = r.get("bpb")) {
                sum[r.x].first += *v;
                ++sum[r.x].second;
            }
    std::map<double, double> out;
    for (const auto& [x, s] : sum) out[x] = s.first / s.second;
    return out;
}

// The first step where the curve reaches `target`, interpolated between evaluations.
std::optional<double> steps_to_reach(const std::map<double, double>& curve, double target)
{
    std::optional<std::pair<double, double>> prev;
    for (const auto& [x, v] : curve) {
        if (v <= target) {
            if (!prev || prev->second == v) return x;
            return prev->first + (x - prev->first) * (prev->second - target) / (prev->second - v);
        }
        prev = std::make_pair(x, v);
    }
    return std::nullopt;
}

void muon(ClaimResult& r, Rows rows)
{
    const auto adamw = mean_curve(rows, "adamw"), mu = mean_curve(rows, "muon");
    if (adamw.size() < 2 || mu.size() < 2) return;
    const double last_step = adamw.rbegin()->first, target = adamw.rbegin()->second;
    const auto muon_steps = steps_to_reach(mu, target);
    const auto adamw_steps = steps_to_reach(adamw, target);
    if (!adamw_steps) return;
    if (!muon_steps) {
        r.verdict = Verdict::does_not_hold;
        r.value = 0.0;
        r.measured = fmt::format("Muon never reached AdamW's {:.3f} bits/byte in {:g} steps", target, last_step);
        return;
    }
    const double faster = *adamw_steps / *muon_steps - 1.0;
    r.value = 100.0 * faster;
    r.verdict = faster >= 0.3 ? Verdict::holds : Verdict::does_not_hold;
    r.measured = fmt::format("Muon reached AdamW's final {:.3f} bits/byte in {:.0f} steps, AdamW in {:.0f} ({:+.0f}%)",
                             target, *muon_steps, *adamw_steps, 100.0 * faster);
}

void lora(ClaimResult& r, Rows rows)
{
    evaluate_groups(r, rows, "rank", [](const std::vector<const Row*>& g) {
        std::vector<SizePoint> pts;
        std::optional<double> full_params, full_bytes;
        for (const Row* row : g)
            if (row->series == "full") {
                full_params = row->get("params");
                full_bytes = row->get("bytes");
            }
        if (!full_params || !full_bytes) return pts;
        for (double rank : xs(g, "lora")) {
            const auto p = value_at(g, "lora", rank, "params"), b = value_at(g, "lora", rank, "bytes");
            if (!p || !b || *p <= 0 || *b <= 0) continue;
            const double fewer = *full_params / *p, less = *full_bytes / *b;
            pts.push_back({rank, fewer >= 1000.0 && less >= 8.0, fewer,
                           fmt::format("{:.0f}× fewer parameters, {:.1f}× less memory at rank {:g}", fewer, less, rank)});
        }
        return pts;
    }, true);
}

// Slope of log(y) against log(x), least squares.
std::optional<double> log_slope(const std::vector<std::pair<double, double>>& pts)
{
    if (pts.size() < 2) return std::nullopt;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const auto& [x, y] : pts) {
        const double lx = std::log(x), ly = std::log(y);
        sx += lx;
        sy += ly;
        sxx += lx * lx;
        sxy += lx * ly;
    }
    const double n = double(pts.size()), d = n * sxx - sx * sx;
    if (d <= 0) return std::nullopt;
    return (n * sxy - sx * sy) / d;
}

void kv_cache(ClaimResult& r, Rows rows)
{
    // Seconds per generated token grow ~n with recomputation (each token
    // re-reads the whole context: O(n²) for n tokens) and stay ~flat with
    // the cache (O(n) in all). The claim holds when the exponents differ by
    // at least a half.
    for (const auto& [tags, g] : by_tags(rows, "kv_cache")) {
        std::vector<std::pair<double, double>> kv, re;
        for (const Row* row : g) {
            if (row->x_name != "length") continue;
            const auto v = row->get("tok_s");
            if (!v || *v <= 0 || row->x <= 0) continue;
            (row->series == "kv_cache" ? kv : re).emplace_back(row->x, 1.0 / *v);
        }
        const auto a = log_slope(re), b = log_slope(kv);
        if (!a || !b) continue;
        r.tags = tags;
        r.value = *a - *b;
        r.verdict = *a - *b >= 0.5 ? Verdict::holds : Verdict::does_not_hold;
        r.measured = fmt::format("time per token ∝ n^{:.2f} recomputing, n^{:.2f} with the cache", *a, *b);
        // Where the cache starts to pay off, when it does not at once.
        std::sort(kv.begin(), kv.end());
        std::sort(re.begin(), re.end());
        std::vector<SizePoint> pts;
        for (const auto& [x, t] : kv)
            for (const auto& [x2, t2] : re)
                if (x == x2) pts.push_back({x, t < t2, t2 / t, ""});
        const bool all = std::all_of(pts.begin(), pts.end(), [](const SizePoint& p) { return p.holds; });
        if (r.verdict == Verdict::holds && !all && !pts.empty()) {
            ClaimResult tmp;
            conclude(tmp, pts, "length");
            r.verdict = Verdict::depends_on_size;
            r.turns_at = tmp.turns_at.empty() ? "" : "cache faster: " + tmp.turns_at.substr(6);
        }
        return;
    }
}

} // namespace

std::vector<ClaimResult> evaluate_claims(std::span<const Row> rows)
{
    std::vector<ClaimResult> out;
    static const std::map<std::string, std::function<void(ClaimResult&, Rows)>> judge = {
        {"rmsnorm", rmsnorm}, {"flash_attention", flash}, {"gqa", gqa},
        {"muon", muon},       {"lora", lora},             {"kv_cache", kv_cache},
    };
    for (const Claim& c : claims()) {
        ClaimResult r;
        r.claim = c;
        judge.at(c.id)(r, rows);
        r.claim = c;
        out.push_back(std::move(r));
    }
    return out;
}

} // namespace crucible::bench
