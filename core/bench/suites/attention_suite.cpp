// Attention suite: the flash kernel against naive attention (the T×T scores
// in memory) and PyTorch SDPA, over T per head dim, forward and
// forward+backward. FLOPs as FlashAttention counts them: 4·B·H·T²·D/2 for
// the causal forward, 2.5× that for the backward.
//
// The CUDA backend has both kernels (AttentionKind). The CPU backend has
// only its tiled kernel, so on a CPU "naive" is the textbook forward written
// here out of the backend's GEMM: all B·H·T² scores, a causal softmax over
// them, and a second GEMM (forward only: no backward is written that way).
#include "core/bench/peer.h"
#include "core/bench/suite_context.h"
#include "core/tensor/buffer.h"
#include "core/util/rng.h"
#include "kernels/backend.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace crucible::bench {

namespace {

// N(0, 1) values: one random block uploaded over and over (GPU-sized
// tensors hold hundreds of millions of values; they need only be realistic).
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

// Naive causal attention on the CPU backend (host memory, f32): the scores
// of every head in one [B·H, T, T] buffer, as an unfused implementation has.
class CpuNaiveAttention {
public:
    CpuNaiveAttention(Backend& be, const AttentionShape& s)
        : m_be(be), m_s(s), m_scores(be, dtype_bytes(DType::f32, s.batch * s.n_heads * s.seq * s.seq)),
          m_q(be, dtype_bytes(DType::f32, s.seq * s.head_dim)), m_k(be, dtype_bytes(DType::f32, s.seq * s.head_dim)),
          m_vt(be, dtype_bytes(DType::f32, s.seq * s.head_dim)), m_o(be, dtype_bytes(DType::f32, s.seq * s.head_dim))
    {
    }
    size_t bytes() const { return m_scores.bytes() + 4 * m_q.bytes(); }

    void forward(Tensor out, Tensor qkv)
    {
        const int64_t T = m_s.seq, D = m_s.head_dim, H = m_s.n_heads, W = m_s.qkv_dim();
        const float* in = qkv.as<const float>();
        float* o = out.as<float>();
        float *q = m_q.as<float>(), *k = m_k.as<float>(), *vt = m_vt.as<float>(), *oh = m_o.as<float>();
        const float scale = 1.0f / std::sqrt(float(D));
        for (int64_t b = 0; b < m_s.batch; ++b)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t kvh = h / m_s.group();
                for (int64_t t = 0; t < T; ++t) {
                    const float* row = in + (b * T + t) * W;
                    for (int64_t d = 0; d < D; ++d) {
                        q[t * D + d] = row[h * D + d] * scale;
                        k[t * D + d] = row[(H + kvh) * D + d];
                        vt[d * T + t] = row[(H + m_s.n_kv_heads + kvh) * D + d];
                    }
                }
                float* s = m_scores.as<float>() + (b * H + h) * T * T;
                const Tensor ts(s, DType::f32, Shape{T, T}, DeviceKind::cpu);
                m_be.linear_forward(ts, Tensor(q, DType::f32, Shape{T, D}, DeviceKind::cpu),
                                    Tensor(k, DType::f32, Shape{T, D}, DeviceKind::cpu));
                for (int64_t i = 0; i < T; ++i) {
                    float* r = s + i * T;
                    float mx = r[0];
                    for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, r[j]);
                    float sum = 0.0f;
                    for (int64_t j = 0; j <= i; ++j) sum += (r[j] = std::exp(r[j] - mx));
                    for (int64_t j = 0; j <= i; ++j) r[j] /= sum;
                    for (int64_t j = i + 1; j < T; ++j) r[j] = 0.0f;
                }
                m_be.linear_forward(Tensor(oh, DType::f32, Shape{T, D}, DeviceKind::cpu), ts,
                                    Tensor(vt, DType::f32, Shape{D, T}, DeviceKind::cpu));
                for (int64_t t = 0; t < T; ++t)
                    for (int64_t d = 0; d < D; ++d) o[(b * T + t) * H * D + h * D + d] = oh[t * D + d];
            }
    }

private:
    Backend& m_be;
    AttentionShape m_s;
    DeviceBuffer m_scores, m_q, m_k, m_vt, m_o;
};

} // namespace

void run_attention_suite(SuiteContext& c)
{
    const std::vector<int> dims = c.integers("head_dims"), seqs = c.integers("seqs");
    const int64_t tokens = c.integer("tokens"), model_dim = c.integer("model_dim");
    const int repeats = c.integer("repeats"), warmup = c.integer("warmup");
    const bool backward = c.integer("backward") != 0, with_naive = c.integer("naive") != 0;
    Backend& be = c.backend();
    const DType dt = be.compute_dtype();
    const bool cuda = c.cuda();
    const AttentionKind previous = be.attention_kind();

    // The PyTorch peer first (CUDA only: it measures SDPA's flash kernel),
    // so its rows land beside ours as the chart fills.
    std::map<std::string, nlohmann::json> peer;
    if (c.request().peer && cuda) {
        const std::string script = find_peer_script(
            c.request().peer_script_dir.empty() ? "" : c.request().peer_script_dir + "/torch_attention_bench.py",
            "torch_attention_bench.py");
        if (script.empty()) c.note("PyTorch peer skipped: torch_attention_bench.py not found");
        else {
            c.step(0, 1, "PyTorch SDPA peer");
            for (const auto& r : run_peer(script, fmt::format("--head-dims {} --seqs {} --tokens {} --model-dim {} "
                                                              "--warmup {} --repeats {}",
                                                              c.text("head_dims"), c.text("seqs"), tokens, model_dim,
                                                              warmup, repeats)))
                if (r.contains("label") && !r.contains("error")) peer[r["label"].get<std::string>()] = r;
        }
    } else if (c.request().peer) {
        c.note("PyTorch peer: SDPA's flash kernel needs a GPU; on the CPU only our kernels are compared");
    }

    size_t index = 0;
    const size_t total = dims.size() * seqs.size();
    for (int D : dims)
        for (int T : seqs) {
            c.step(index++, total, fmt::format("attention D{} T{}", D, T));
            const int64_t B = std::max<int64_t>(1, tokens / T), H = std::max<int64_t>(1, model_dim / D);
            const AttentionShape s{B, T, H, H, D};
            const int64_t N = s.tokens();
            const double fwd_flops = 4.0 * double(B) * double(H) * double(T) * double(T) * double(D) / 2.0;
            const double fb_flops = 3.5 * fwd_flops;
            const MemoryInfo before = be.memory_info();

            DeviceBuffer qkv_buf(be, dtype_bytes(dt, N * s.qkv_dim())), out_buf(be, dtype_bytes(dt, N * s.q_dim()));
            DeviceBuffer lse_buf(be, dtype_bytes(DType::f32, B * H * T));
            DeviceBuffer dout_buf(be, backward ? dtype_bytes(dt, N * s.q_dim()) : 0);
            DeviceBuffer dqkv_buf(be, backward ? dtype_bytes(dt, N * s.qkv_dim()) : 0);
            const Tensor qkv = qkv_buf.tensor(dt, Shape{N, s.qkv_dim()}), out = out_buf.tensor(dt, Shape{N, s.q_dim()});
            const Tensor lse = lse_buf.tensor(DType::f32, Shape{B, H, T});
            fill_random(be, qkv, 1);
            Tensor dout, dqkv;
            if (backward) {
                dout = dout_buf.tensor(dt, Shape{N, s.q_dim()});
                dqkv = dqkv_buf.tensor(dt, Shape{N, s.qkv_dim()});
                fill_random(be, dout, 2);
            }
            const size_t fwd_tensors = qkv_buf.bytes() + out_buf.bytes() + lse_buf.bytes();
            const size_t fb_tensors = fwd_tensors + dout_buf.bytes() + dqkv_buf.bytes();
            auto fwd = [&] { be.attention_forward(out, lse, qkv, s); };
            auto fwd_bwd = [&] {
                be.attention_forward(out, lse, qkv, s);
                be.attention_backward(dqkv, dout, qkv, out, lse, s);
            };
            // Memory an implementation took beyond our tensors: the growth of
            // the device's used memory (its scratch stays allocated).
            auto scratch = [&] {
                const MemoryInfo now = be.memory_info();
                const size_t ours = fb_tensors;
                return cuda && before.free_bytes > now.free_bytes + ours ? before.free_bytes - now.free_bytes - ours
                                                                         : size_t(0);
            };
            auto emit = [&](const std::string& series, const std::string& pass, double ms, double flops, double bytes) {
                Row r = make_row(c, series, "T", T, "tokens");
                r.tags = {{"D", std::to_string(D)}, {"pass", pass}};
                add(r, "ms", ms, "ms");
                add(r, "tflops", flops / (ms * 1e-3) / 1e12, "TFLOP/s");
                if (bytes > 0) add(r, "peak_bytes", bytes, "bytes");
                c.emit(std::move(r));
            };

            be.set_attention_kind(AttentionKind::flash);
            const double flash_fwd = c.time(fwd, warmup, repeats).median_ms;
            emit("flash", "fwd", flash_fwd, fwd_flops, double(fwd_tensors + scratch()));
            if (backward) {
                const double flash_fb = c.time(fwd_bwd, warmup, repeats).median_ms;
                emit("flash", "fwd+bwd", flash_fb, fb_flops, double(fb_tensors + scratch()));
            }

            // Naive: its scores (and on CUDA their gradient) must fit.
            const size_t score_bytes = dtype_bytes(cuda ? dt : DType::f32, B * H * int64_t(T) * T);
            const MemoryInfo mem = be.memory_info();
            if (!with_naive) {
                // asked not to
            } else if (2 * score_bytes >= mem.free_bytes / 10 * 9) {
                c.note(fmt::format("naive D{} T{} skipped: its scores need {} MB", D, T, 2 * score_bytes / 1'000'000));
            } else if (cuda) {
                be.set_attention_kind(AttentionKind::naive);
                // The device's scratch is kept and shared between kernels, so
                // after naive it holds the larger of the two needs; naive's
                // is at least its scores (and their gradient backward).
                try {
                    const double nf = c.time(fwd, warmup, repeats).median_ms;
                    emit("naive", "fwd", nf, fwd_flops, double(fwd_tensors + std::max(scratch(), score_bytes)));
                    if (backward) {
                        const double nfb = c.time(fwd_bwd, warmup, repeats).median_ms;
                        emit("naive", "fwd+bwd", nfb, fb_flops, double(fb_tensors + std::max(scratch(), 2 * score_bytes)));
                    }
                } catch (const Cancelled&) {
                    be.set_attention_kind(previous);
                    throw;
                } catch (const Error& e) {
                    c.note(fmt::format("naive D{} T{} skipped: {}", D, T, e.what()));
                }
                be.set_attention_kind(previous);
            } else {
                CpuNaiveAttention naive(be, s);
                const double nf = c.time([&] { naive.forward(out, qkv); }, warmup, repeats).median_ms;
                emit("naive", "fwd", nf, fwd_flops, double(fwd_tensors + naive.bytes()));
            }

            if (const auto it = peer.find(fmt::format("D{} T{}", D, T)); it != peer.end()) {
                const auto& p = it->second;
                if (p.contains("fwd_ms")) emit("peer", "fwd", p["fwd_ms"].get<double>(), fwd_flops, 0);
                if (backward && p.contains("fwdbwd_ms")) emit("peer", "fwd+bwd", p["fwdbwd_ms"].get<double>(), fb_flops, 0);
            }
        }
    be.set_attention_kind(previous);
    c.note(fmt::format("causal {}, B·T = {}, H = {}/D; FLOPs 4·B·H·T²·D/2 forward, 2.5× that backward; median of {} "
                       "samples; memory: the tensors of the call plus the scratch the device reports{}",
                       dtype_name(dt), tokens, model_dim, repeats,
                       cuda ? "" : "; naive on the CPU: GEMM + softmax over all B·H·T² scores, forward only"));
}

} // namespace crucible::bench
