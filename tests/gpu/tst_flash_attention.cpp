// Flash attention against naive attention and the CPU reference, forward and
// backward, on random inputs: lengths that are not multiples of the tiles
// (1, 17, 100, 1000, 2048), GQA ratios 1, 2, 4, 8 and MQA, head dims 32, 48,
// 64 and 128 (the flash kernels) plus 40 and 256 (the exact fallback).
// Every flash check runs the portable kernels and, on a device that has it,
// the Hopper forward (head dims 64 and 128; its output feeds the backward).
//
// The CPU (f32) computes on the bf16-rounded inputs, so its result is the
// exact answer for what the GPU holds. Flash in bf16 rounds P to bf16 before
// P·V (and dS before dS·K, dSᵀ·Q): about 2^-9 relative per element, a few
// 1e-3 in the norm. Each check demands both an absolute bound (1e-2 forward,
// 2e-2 backward) and that flash be no worse than twice the error of the naive
// bf16 path, which rounds the materialised P and dS the same way. The f32
// mode (exact kernel) must match the CPU within 1e-5. Flash must also be
// bit-identical from run to run (no atomics in the backward).
#include "tests/gpu/gpu_compare.h"

#include <QtTest>

#include <cstring>

using namespace crucible;
using namespace crucible::test;

namespace {

struct AttnResult {
    std::vector<float> out, lse, dqkv;
};

struct Inputs {
    std::vector<float> qkv, dout;
};

AttnResult run(Backend& be, const AttentionShape& s, const Inputs& in, AttentionKind kind)
{
    be.set_attention_kind(kind);
    const int64_t N = s.tokens();
    OwnedTensor qkv(be, be.compute_dtype(), Shape{N, s.qkv_dim()}, in.qkv);
    OwnedTensor dout(be, be.compute_dtype(), Shape{N, s.q_dim()}, in.dout);
    // Poison the outputs: every element must be written.
    OwnedTensor out(be, be.compute_dtype(), Shape{N, s.q_dim()}, std::vector<float>(size_t(N * s.q_dim()), NAN));
    OwnedTensor lse(be, DType::f32, Shape{s.batch, s.n_heads, s.seq},
                    std::vector<float>(size_t(s.batch * s.n_heads * s.seq), NAN));
    OwnedTensor dqkv(be, be.compute_dtype(), Shape{N, s.qkv_dim()}, std::vector<float>(size_t(N * s.qkv_dim()), NAN));
    be.attention_forward(out.t, lse.t, qkv.t, s);
    be.attention_backward(dqkv.t, dout.t, qkv.t, out.t, lse.t, s);
    be.synchronize();
    be.set_attention_kind(AttentionKind::flash);
    return AttnResult{out.to_host(), lse.to_host(), dqkv.to_host()};
}

// The flash kernels to check for a head dim on this backend.
std::vector<AttentionKind> flash_kinds(Backend& be, int64_t head_dim)
{
    std::vector<AttentionKind> kinds{AttentionKind::flash_portable};
    for (const auto& [key, value] : be.facts().details)
        if (key == "hopper attention" && value.rfind("yes", 0) == 0 && (head_dim == 64 || head_dim == 128))
            kinds.push_back(AttentionKind::flash_hopper);
    return kinds;
}

const char* kind_name(AttentionKind k)
{
    return k == AttentionKind::flash_hopper ? "hopper" : "flash";
}

std::string describe(const AttentionShape& s)
{
    return "B" + std::to_string(s.batch) + " T" + std::to_string(s.seq) + " H" + std::to_string(s.n_heads) + " KV" +
           std::to_string(s.n_kv_heads) + " D" + std::to_string(s.head_dim);
}

} // namespace

class TestFlashAttention : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<Backend> m_cpu, m_f32, m_bf16;
    double m_worst_fwd = 0, m_worst_bwd = 0;
    int m_hopper_checks = 0;

    void check(const AttentionShape& s, bool with_cpu, uint64_t seed)
    {
        const int64_t N = s.tokens();
        Inputs in{rounded_for(*m_bf16, random_vector(size_t(N * s.qkv_dim()), seed)),
                  rounded_for(*m_bf16, random_vector(size_t(N * s.q_dim()), seed + 1))};
        const AttnResult naive = run(*m_bf16, s, in, AttentionKind::naive);
        const AttnResult ref = with_cpu ? run(*m_cpu, s, in, AttentionKind::flash) : AttnResult{};
        for (AttentionKind kind : flash_kinds(*m_bf16, s.head_dim)) {
            const AttnResult flash = run(*m_bf16, s, in, kind);
            const std::string name = describe(s) + " " + kind_name(kind);
            if (kind == AttentionKind::flash_hopper) ++m_hopper_checks;
            for (const auto* v : {&flash.out, &flash.lse, &flash.dqkv})
                for (float x : *v) QVERIFY2(std::isfinite(x), (name + ": non-finite or unwritten output").c_str());

            if (with_cpu) {
                const double fo = relative_error(flash.out, ref.out), no = relative_error(naive.out, ref.out);
                const double fl = relative_error(flash.lse, ref.lse), nl = relative_error(naive.lse, ref.lse);
                const double fd = relative_error(flash.dqkv, ref.dqkv), nd = relative_error(naive.dqkv, ref.dqkv);
                qInfo("%-31s vs cpu: out flash %.2e naive %.2e | lse flash %.2e naive %.2e | dqkv flash %.2e naive %.2e",
                      name.c_str(), fo, no, fl, nl, fd, nd);
                m_worst_fwd = std::max(m_worst_fwd, fo);
                m_worst_bwd = std::max(m_worst_bwd, fd);
                QVERIFY2(fo <= 1e-2 && fo <= 2 * no + 1e-3, (name + ": flash forward too far from the CPU").c_str());
                QVERIFY2(fl <= 1e-4, (name + ": flash lse too far from the CPU").c_str());
                QVERIFY2(fd <= 2e-2 && fd <= 2 * nd + 2e-3, (name + ": flash backward too far from the CPU").c_str());
            } else {
                const double o = relative_error(flash.out, naive.out), d = relative_error(flash.dqkv, naive.dqkv);
                qInfo("%-31s flash vs naive: out %.2e dqkv %.2e", name.c_str(), o, d);
                QVERIFY2(o <= 1e-2 && d <= 3e-2, (name + ": flash and naive disagree").c_str());
            }
        }
        if (with_cpu) {
            const AttnResult exact = run(*m_f32, s, in, AttentionKind::flash);
            const double eo = relative_error(exact.out, ref.out), ed = relative_error(exact.dqkv, ref.dqkv);
            qInfo("%-31s f32 mode vs cpu: out %.2e dqkv %.2e", describe(s).c_str(), eo, ed);
            QVERIFY2(eo <= 1e-5 && ed <= 1e-5, (describe(s) + ": f32 attention differs from the CPU").c_str());
        }
    }

private slots:
    void initTestCase()
    {
        std::string why;
        if (!cuda_available(&why)) QSKIP(("no CUDA device: " + why).c_str());
        m_cpu = make_cpu();
        m_f32 = make_cuda(true);
        m_bf16 = make_cuda(false);
    }

    void lengths_groups_dims()
    {
        uint64_t seed = 1;
        for (int64_t D : {32, 48, 64, 128}) {
            // T not a multiple of any tile; every GQA ratio and MQA.
            check({2, 1, 4, 4, D}, true, seed++);
            check({2, 17, 4, 2, D}, true, seed++);
            check({1, 100, 8, 2, D}, true, seed++);
            check({1, 1000, 8, 1, D}, true, seed++);
            check({1, 2048, 8, 8, D}, true, seed++);
            check({2, 333, 16, 2, D}, false, seed++);
        }
    }

    void hopper_tiles()
    {
        // Lengths around the Hopper kernel's 128-row and 128-key tiles, both
        // of its head dims, GQA and MQA (only the portable kernels run where
        // the device has no Hopper kernel).
        uint64_t seed = 300;
        for (int64_t D : {64, 128}) {
            check({1, 127, 4, 4, D}, true, seed++);
            check({2, 129, 4, 2, D}, true, seed++);
            check({1, 255, 8, 1, D}, true, seed++);
            check({1, 385, 8, 4, D}, true, seed++);
            check({1, 4096, 4, 2, D}, false, seed++);
        }
    }

    void hopper_error_map()
    {
        // Where the Hopper forward is wrong, if it is: the error per block of
        // 16 rows (one warp's rows; blocks 0-3 are the first consumer's, 4-7
        // the second's) and per 64 columns of the head, for out and lse, so a
        // fault points at its stage (Q·Kᵀ shows in lse, P·V only in out).
        if (flash_kinds(*m_bf16, 64).size() < 2) QSKIP("no Hopper attention kernel on this device");
        for (int64_t D : {64, 128}) {
            const AttentionShape s{1, 256, 2, 1, D};
            const int64_t N = s.tokens();
            Inputs in{rounded_for(*m_bf16, random_vector(size_t(N * s.qkv_dim()), 500 + D)),
                      rounded_for(*m_bf16, random_vector(size_t(N * s.q_dim()), 501 + D))};
            const AttnResult hop = run(*m_bf16, s, in, AttentionKind::flash_hopper);
            const AttnResult ref = run(*m_cpu, s, in, AttentionKind::flash);
            for (int64_t h = 0; h < s.n_heads; ++h) {
                std::string map;
                double worst = 0;
                for (int64_t r0 = 0; r0 < s.seq; r0 += 16) {
                    for (int64_t c0 = 0; c0 < D; c0 += 64) {
                        std::vector<float> a, b;
                        for (int64_t r = r0; r < r0 + 16; ++r)
                            for (int64_t c = c0; c < c0 + 64; ++c) {
                                a.push_back(hop.out[size_t(r * s.q_dim() + h * D + c)]);
                                b.push_back(ref.out[size_t(r * s.q_dim() + h * D + c)]);
                            }
                        const double e = relative_error(a, b);
                        worst = std::max(worst, e);
                        map += (e <= 1e-2 ? "." : "X");
                    }
                    double lse_err = 0;
                    for (int64_t r = r0; r < r0 + 16; ++r)
                        lse_err = std::max(lse_err, double(std::abs(hop.lse[size_t(h * s.seq + r)] -
                                                                    ref.lse[size_t(h * s.seq + r)])));
                    map += lse_err <= 1e-3 ? "|" : "!";
                    worst = std::max(worst, lse_err);
                }
                qInfo("hopper error map D%lld head %lld, per 16 rows (out per 64 columns: . ok, X wrong; lse: | ok, ! wrong): %s",
                      (long long)D, (long long)h, map.c_str());
                QVERIFY2(worst <= 1e-2, ("Hopper forward wrong in places, D" + std::to_string(D) + ": " + map).c_str());
            }
        }
    }

    void hopper_serial_schedule()
    {
        // The Hopper kernel's plain schedule (no overlap, no turns), kept to
        // tell a schedule fault from a layout fault: it must be right too.
        if (flash_kinds(*m_bf16, 64).size() < 2) QSKIP("no Hopper attention kernel on this device");
        qputenv("CRUCIBLE_HOPPER_SCHEDULE", "serial");
        uint64_t seed = 400;
        for (int64_t D : {64, 128}) {
            check({2, 129, 4, 2, D}, true, seed++);
            check({1, 1000, 8, 1, D}, true, seed++);
        }
        qunsetenv("CRUCIBLE_HOPPER_SCHEDULE");
    }

    void fallback_head_dims()
    {
        // Head dims the flash kernels are not built for run the exact kernel.
        check({2, 67, 4, 2, 40}, true, 100);
        check({1, 45, 2, 1, 256}, true, 101);
        check({1, 30, 2, 2, 2}, true, 102);
    }

    void deterministic()
    {
        const AttentionShape s{2, 777, 8, 2, 64};
        Inputs in{rounded_for(*m_bf16, random_vector(size_t(s.tokens() * s.qkv_dim()), 200)),
                  rounded_for(*m_bf16, random_vector(size_t(s.tokens() * s.q_dim()), 201))};
        for (AttentionKind kind : flash_kinds(*m_bf16, s.head_dim)) {
            const AttnResult a = run(*m_bf16, s, in, kind);
            const AttnResult b = run(*m_bf16, s, in, kind);
            QVERIFY2(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)) == 0, kind_name(kind));
            QVERIFY2(std::memcmp(a.dqkv.data(), b.dqkv.data(), a.dqkv.size() * sizeof(float)) == 0, kind_name(kind));
        }
    }

    void cleanupTestCase()
    {
        if (m_bf16)
            qInfo("worst flash relative error vs CPU: forward %.3e, backward %.3e; %d checks of the Hopper forward",
                  m_worst_fwd, m_worst_bwd, m_hopper_checks);
    }
};

QTEST_APPLESS_MAIN(TestFlashAttention)
#include "tst_flash_attention.moc"
