// Norms and activations suite: memory-bound ops, so each row gives its time
// and the GB/s it moved (bytes read + written, counted per op below) for
// the page to draw against the device's bandwidth.
//
// - RMSNorm vs LayerNorm (the backend has both), forward and forward+backward.
// - SwiGLU fused (one pass: read gate and up, write the product) vs
//   unfused (an activation pass, then an elementwise product pass, as eager
//   frameworks run it), the unfused passes timed with the backend's own
//   elementwise kernels of the same traffic (GELU for the activation, add
//   for the product).
// - RoPE fused (rotate q and k in place in one pass) vs unfused (the eager
//   formula q·cos + rotate_half(q)·sin: four elementwise passes, each
//   reading two operands and writing one), the passes timed with add.
#include "core/bench/suite_context.h"
#include "core/tensor/buffer.h"
#include "kernels/backend.h"

#include <fmt/core.h>

namespace crucible::bench {

void run_norms_suite(SuiteContext& c)
{
    const std::vector<int> widths = c.integers("widths");
    const int64_t N = c.integer("rows");
    const int repeats = c.integer("repeats"), warmup = c.tiny() ? 1 : 3;
    Backend& be = c.backend();
    const DType dt = be.compute_dtype();
    const double es = double(dtype_bytes(dt, 1));
    constexpr int64_t kHeadDim = 64;

    size_t index = 0;
    for (int C : widths) {
        c.step(index++, widths.size(), fmt::format("norms and activations C={}", C));
        auto emit = [&](const std::string& op, const std::string& pass, const std::string& series, double ms,
                        double bytes) {
            Row r = make_row(c, series, "C", C);
            r.tags = {{"op", op}, {"pass", pass}};
            add(r, "ms", ms, "ms");
            add(r, "gbs", bytes / (ms * 1e-3) / 1e9, "GB/s");
            c.emit(std::move(r));
        };
        auto buffer = [&](int64_t n, DType t) { return DeviceBuffer(be, dtype_bytes(t, n)); };
        const double nc = double(N) * double(C);

        // ---- norms
        {
            DeviceBuffer x = buffer(N * C, dt), out = buffer(N * C, dt), dx = buffer(N * C, dt), dout = buffer(N * C, dt);
            DeviceBuffer w = buffer(C, dt), b = buffer(C, dt), dw = buffer(C, DType::f32), db = buffer(C, DType::f32);
            DeviceBuffer mean = buffer(N, DType::f32), rstd = buffer(N, DType::f32);
            const Tensor tx = x.tensor(dt, Shape{N, C}), tout = out.tensor(dt, Shape{N, C}),
                         tdx = dx.tensor(dt, Shape{N, C}), tdout = dout.tensor(dt, Shape{N, C});
            const Tensor tw = w.tensor(dt, Shape{C}), tb = b.tensor(dt, Shape{C});
            const Tensor tdw = dw.tensor(DType::f32, Shape{C}), tdb = db.tensor(DType::f32, Shape{C});
            const Tensor tmean = mean.tensor(DType::f32, Shape{N}), trstd = rstd.tensor(DType::f32, Shape{N});
            be.fill(tx, 0.5f);
            be.fill(tw, 1.0f);
            be.fill(tb, 0.0f);
            be.fill(tdout, 0.1f);
            be.fill(tdw, 0.0f);
            be.fill(tdb, 0.0f);
            const double fwd_bytes = 2 * nc * es, fb_bytes = fwd_bytes + 3 * nc * es;
            auto rms_f = [&] { be.rmsnorm_forward(tout, trstd, tx, tw, 1e-5f); };
            auto ln_f = [&] { be.layernorm_forward(tout, tmean, trstd, tx, tw, tb, 1e-5f); };
            emit("norm", "fwd", "rmsnorm", c.time(rms_f, warmup, repeats).median_ms, fwd_bytes);
            emit("norm", "fwd", "layernorm", c.time(ln_f, warmup, repeats).median_ms, fwd_bytes);
            auto rms_fb = [&] {
                rms_f();
                be.rmsnorm_backward(tdx, tdw, tdout, tx, tw, trstd, false);
            };
            auto ln_fb = [&] {
                ln_f();
                be.layernorm_backward(tdx, tdw, tdb, tdout, tx, tw, tmean, trstd, false);
            };
            emit("norm", "fwd+bwd", "rmsnorm", c.time(rms_fb, warmup, repeats).median_ms, fb_bytes);
            emit("norm", "fwd+bwd", "layernorm", c.time(ln_fb, warmup, repeats).median_ms, fb_bytes);
        }
        // ---- SwiGLU over a hidden width F = C
        {
            DeviceBuffer gate_up = buffer(2 * N * C, dt), out = buffer(N * C, dt), tmp = buffer(N * C, dt);
            const Tensor tgu = gate_up.tensor(dt, Shape{N, 2 * int64_t(C)}), tout = out.tensor(dt, Shape{N, C}),
                         ttmp = tmp.tensor(dt, Shape{N, C});
            be.fill(tgu, 0.3f);
            const Tensor gate = gate_up.tensor(dt, Shape{N, C});   // same traffic as the gate half
            auto fused = [&] { be.swiglu_forward(tout, tgu); };
            auto unfused = [&] {
                be.gelu_forward(ttmp, gate);       // act(gate)
                be.add(tout, ttmp, gate);          // · up (an elementwise pass of two operands)
            };
            emit("swiglu", "fwd", "swiglu_fused", c.time(fused, warmup, repeats).median_ms, 3 * nc * es);
            emit("swiglu", "fwd", "swiglu_unfused", c.time(unfused, warmup, repeats).median_ms, 5 * nc * es);
        }
        // ---- RoPE over q and k of H = C / 64 heads (MHA)
        {
            const int64_t D = std::min<int64_t>(kHeadDim, C), H = std::max<int64_t>(1, C / D);
            const AttentionShape s{1, N, H, H, D};
            DeviceBuffer qkv = buffer(N * s.qkv_dim(), dt), a = buffer(N * 2 * H * D, dt), b = buffer(N * 2 * H * D, dt);
            const Tensor tqkv = qkv.tensor(dt, Shape{N, s.qkv_dim()});
            const Tensor ta = a.tensor(dt, Shape{N, 2 * H * D}), tb = b.tensor(dt, Shape{N, 2 * H * D});
            be.fill(tqkv, 0.2f);
            be.fill(ta, 0.2f);
            be.fill(tb, 0.1f);
            const double qk = double(N) * double(2 * H * D);
            auto fused = [&] { be.rope_forward(tqkv, s, 0, 10000.0f); };
            auto unfused = [&] {
                for (int pass = 0; pass < 4; ++pass) be.add(ta, ta, tb);
            };
            emit("rope", "fwd", "rope_fused", c.time(fused, warmup, repeats).median_ms, 2 * qk * es);
            emit("rope", "fwd", "rope_unfused", c.time(unfused, warmup, repeats).median_ms, 12 * qk * es);
        }
    }
    c.note(fmt::format("{} rows per call, {}; GB/s = bytes read + written per op / time. Unfused SwiGLU and RoPE are "
                       "the eager passes (activation then product; q·cos + rotate_half(q)·sin), timed with the "
                       "backend's elementwise kernels of the same traffic",
                       N, dtype_name(dt)));
}

} // namespace crucible::bench
