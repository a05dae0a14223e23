#include "core/bench/attention_bench.h"

#include "core/tensor/buffer.h"
#include "core/util/rng.h"
#include "kernels/backend.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace crucible {

namespace {

constexpr double kTargetSampleMs = 2.0;   // calls per sample grow until a sample lasts this long

// Fills a tensor with N(0, 1) values: one random block uploaded over and over
// (the values only need to be realistic, not independent).
void fill_random(Backend& be, Tensor t, uint64_t seed)
{
    const int64_t block = std::min<int64_t>(t.numel(), int64_t(1) << 22);
    std::vector<float> host(static_cast<size_t>(block));
    Rng rng(seed);
    for (auto& x : host) x = float(rng.normal());
    for (int64_t at = 0; at < t.numel(); at += block) {
        const int64_t n = std::min(block, t.numel() - at);
        be.upload(t.sub(at, Shape{n}), host.data(), DType::f32);
    }
}

// Median time of one call of fn: a sample runs fn `inner` times between
// synchronisations, so the host round trip does not weigh on short calls.
Timing time_call(Backend& be, const std::function<void()>& fn, int warmup, int repeats)
{
    const Timing probe = time_repeated(be, fn, warmup, 1);
    const int inner = int(std::clamp(std::ceil(kTargetSampleMs / std::max(probe.median_ms, 1e-3)), 1.0, 50.0));
    Timing t = time_repeated(
        be, [&] { for (int i = 0; i < inner; ++i) fn(); }, 0, repeats);
    t.median_ms /= inner;
    t.min_ms /= inner;
    t.max_ms /= inner;
    return t;
}

} // namespace

BenchTable run_attention_bench(Backend& be, const AttentionBenchOptions& o)
{
    BenchTable table;
    table.name = "bench attention";
    table.device = be.name();
    table.columns = {{"head_dim", "D", 0},          {"seq", "T", 0},
                     {"batch", "B", 0},             {"heads", "H", 0},
                     {"fwd_ms", "fwd ms", 3},       {"fwd_tflops", "fwd TFLOP/s", 3},
                     {"fwdbwd_ms", "f+b ms", 3},    {"fwdbwd_tflops", "f+b TFLOP/s", 3},
                     {"naive_fwd_tflops", "naive fwd", 3}, {"naive_fwdbwd_tflops", "naive f+b", 3},
                     {"speedup", "flash/naive", 1}};
    const DType dt = be.compute_dtype();
    const AttentionKind previous = be.attention_kind();
    // A backend with a Hopper kernel times it beside the portable one.
    bool has_hopper = false;
    for (const auto& [key, value] : be.facts().details)
        if (key == "hopper attention" && value.rfind("yes", 0) == 0) has_hopper = true;
    if (has_hopper)
        for (const char* k : {"portable_fwd_tflops", "portable_fwdbwd_tflops", "hopper_fwd_tflops", "hopper_fwdbwd_tflops"})
            table.columns.push_back({k, std::string(k).find("fwdbwd") != std::string::npos
                                            ? (k[0] == 'p' ? "portable f+b" : "hopper f+b")
                                            : (k[0] == 'p' ? "portable fwd" : "hopper fwd"),
                                     3});

    size_t row = 0;
    const size_t rows = o.head_dims.size() * o.seq_lens.size();
    for (int D : o.head_dims) {
        for (int T : o.seq_lens) {
            if (o.on_row) o.on_row("D" + std::to_string(D) + " T" + std::to_string(T), row++, rows);
            const int64_t B = std::max<int64_t>(1, o.tokens / T), H = std::max<int64_t>(1, o.model_dim / D);
            const AttentionShape s{B, T, H, H, D};
            const int64_t N = s.tokens();
            const double fwd_flops = 4.0 * double(B) * double(H) * double(T) * double(T) * double(D) / 2.0;
            const double fb_flops = 3.5 * fwd_flops;

            DeviceBuffer qkv_buf(be, dtype_bytes(dt, N * s.qkv_dim()));
            DeviceBuffer out_buf(be, dtype_bytes(dt, N * s.q_dim()));
            DeviceBuffer dout_buf(be, dtype_bytes(dt, N * s.q_dim()));
            DeviceBuffer dqkv_buf(be, dtype_bytes(dt, N * s.qkv_dim()));
            DeviceBuffer lse_buf(be, dtype_bytes(DType::f32, B * H * T));
            const Tensor qkv = qkv_buf.tensor(dt, Shape{N, s.qkv_dim()});
            const Tensor out = out_buf.tensor(dt, Shape{N, s.q_dim()});
            const Tensor dout = dout_buf.tensor(dt, Shape{N, s.q_dim()});
            const Tensor dqkv = dqkv_buf.tensor(dt, Shape{N, s.qkv_dim()});
            const Tensor lse = lse_buf.tensor(DType::f32, Shape{B, H, T});
            fill_random(be, qkv, 1);
            fill_random(be, dout, 2);

            auto fwd = [&] { be.attention_forward(out, lse, qkv, s); };
            auto fwd_bwd = [&] {
                be.attention_forward(out, lse, qkv, s);
                be.attention_backward(dqkv, dout, qkv, out, lse, s);
            };
            auto measure = [&](AttentionKind kind, double& fwd_ms, double& fb_ms) {
                be.set_attention_kind(kind);
                fwd_ms = time_call(be, fwd, o.warmup, o.repeats).median_ms;
                fb_ms = o.backward ? time_call(be, fwd_bwd, o.warmup, o.repeats).median_ms : NAN;
            };

            double f_ms = NAN, fb_ms = NAN, nf_ms = NAN, nfb_ms = NAN;
            measure(AttentionKind::flash, f_ms, fb_ms);
            if (o.naive) {
                // Naive keeps the scores and their gradient: 2·B·H·T² elements.
                const size_t need = 2 * dtype_bytes(dt, B * H * int64_t(T) * T);
                const MemoryInfo mem = be.memory_info();
                if (need < mem.free_bytes / 10 * 9) {
                    try {
                        measure(AttentionKind::naive, nf_ms, nfb_ms);
                    } catch (const Error& e) {
                        table.notes.push_back("naive D" + std::to_string(D) + " T" + std::to_string(T) +
                                              " skipped: " + e.what());
                        nf_ms = nfb_ms = NAN;
                    }
                } else {
                    table.notes.push_back("naive D" + std::to_string(D) + " T" + std::to_string(T) +
                                          " skipped: its scores need " + std::to_string(need / 1'000'000) + " MB");
                }
            }
            double pf_ms = NAN, pfb_ms = NAN, hf_ms = NAN, hfb_ms = NAN;
            if (has_hopper && (D == 64 || D == 128)) {
                measure(AttentionKind::flash_portable, pf_ms, pfb_ms);
                measure(AttentionKind::flash_hopper, hf_ms, hfb_ms);
            }
            be.set_attention_kind(previous);
            auto tflops = [](double flops, double ms) { return std::isnan(ms) ? NAN : flops / (ms * 1e-3) / 1e12; };
            BenchRow r{"D" + std::to_string(D) + " T" + std::to_string(T),
                       {double(D), double(T), double(B), double(H), f_ms, tflops(fwd_flops, f_ms), fb_ms,
                        tflops(fb_flops, fb_ms), tflops(fwd_flops, nf_ms), tflops(fb_flops, nfb_ms), nfb_ms / fb_ms}};
            if (has_hopper)
                for (double v : {tflops(fwd_flops, pf_ms), tflops(fb_flops, pfb_ms), tflops(fwd_flops, hf_ms),
                                 tflops(fb_flops, hfb_ms)})
                    r.values.push_back(v);
            table.rows.push_back(std::move(r));
        }
    }
    table.notes.push_back("causal, " + std::string(dtype_name(dt)) + ", B·T = " + std::to_string(o.tokens) +
                          ", H = " + std::to_string(o.model_dim) + "/D; FLOPs 4·B·H·T²·D/2 forward, 2.5× that "
                          "backward; median of " + std::to_string(o.repeats) + " samples after " +
                          std::to_string(o.warmup) + " warm-up calls");
    if (has_hopper)
        table.notes.push_back("fwd and f+b: the flash kernel the backend picks by default; portable and hopper: each "
                              "forward forced (the backward is the portable kernel after either)");
    return table;
}

} // namespace crucible
