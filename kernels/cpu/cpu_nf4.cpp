// NF4 weights on the CPU: dequantized on the fly, a tile of weight rows at a
// time into a scratch buffer that stays in cache, each tile then one GEMM
// (or, for one row or a few, a dot product per weight row as it is decoded).
// Tiles split the weight's rows, never the sum over its columns, so each
// output element sums in one fixed order: reproducible for a thread count.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <vector>

namespace crucible {

namespace {

constexpr int64_t kGemvMaxRows = 8;              // up to this many input rows: fused decode and dot
constexpr int64_t kTileElements = int64_t(1) << 18;   // 1 MiB of f32 per tile

// Both levels of every code byte (element 2j's from the high nibble, 2j+1's
// from the low one): one table lookup per byte instead of two shifts and two.
struct LevelPair {
    float hi, lo;
};
const std::array<LevelPair, 256>& level_pairs()
{
    static const std::array<LevelPair, 256> table = [] {
        std::array<LevelPair, 256> t{};
        for (int b = 0; b < 256; ++b) t[size_t(b)] = {kNf4LevelTable[b >> 4], kNf4LevelTable[b & 0x0F]};
        return t;
    }();
    return table;
}

// Rows [r0, r1) of the weight, dequantized into dst (row-major, w.cols wide).
void dequantize_rows(const Nf4Weight& w, int64_t r0, int64_t r1, float* dst)
{
    const uint8_t* packed = w.packed.as<uint8_t>();
    const uint8_t* codes = w.absmax_codes.as<uint8_t>();
    const float* scales = w.absmax_scales.as<float>();
    const float* code = w.code.as<float>();
    const LevelPair* pairs = level_pairs().data();
    const int64_t begin = r0 * w.cols, end = r1 * w.cols;
    int64_t i = begin;
    while (i < end) {
        const int64_t block = i / kNf4WeightBlock;
        const float absmax = code[codes[block]] * scales[block / kNf4WeightAbsmaxBlock] + w.absmax_mean;
        const int64_t stop = std::min(end, (block + 1) * kNf4WeightBlock);
        float* out = dst - begin;
        if (i & 1) {   // a row that starts on a low nibble
            out[i] = kNf4LevelTable[packed[i >> 1] & 0x0F] * absmax;
            ++i;
        }
        // Whole bytes: both elements of byte j are 2j and 2j + 1.
        for (; i + 1 < stop; i += 2) {
            const LevelPair p = pairs[packed[i >> 1]];
            out[i] = p.hi * absmax;
            out[i + 1] = p.lo * absmax;
        }
        if (i < stop) {   // a row that ends on a high nibble
            out[i] = kNf4LevelTable[packed[i >> 1] >> 4] * absmax;
            ++i;
        }
    }
}

int64_t tile_rows(const Nf4Weight& w) { return std::max<int64_t>(16, kTileElements / w.cols); }

std::vector<float>& tile_buffer(size_t elements)
{
    thread_local std::vector<float> buffer;
    if (buffer.size() < elements) buffer.resize(elements);
    return buffer;
}

} // namespace

void CpuBackend::do_nf4_dequantize(Tensor out, const Nf4Weight& w)
{
    float* dst = out.as<float>();
    const int64_t step = tile_rows(w);
    const int64_t tiles = (w.rows + step - 1) / step;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (w.numel() >= cpu::kParallelMinWork)
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r0 = t * step, r1 = std::min(w.rows, r0 + step);
        dequantize_rows(w, r0, r1, dst + r0 * w.cols);
    }
}

void CpuBackend::do_nf4_linear_forward(Tensor out, Tensor in, const Nf4Weight& w, int64_t out_col, bool accumulate)
{
    const int64_t m = in.rows(), k = w.cols, n = out.cols();
    const float* x = in.as<float>();
    float* y = out.as<float>() + out_col;
    if (m <= kGemvMaxRows) {
        // Decode: each weight row is decoded once into a row buffer and
        // dotted with the few inputs; the 4-bit codes are the only pass over
        // the weight.
        const bool parallel = 2.0 * double(m) * double(w.rows) * double(k) >= 1e6 && m_threads > 1;
#pragma omp parallel num_threads(m_threads) if (parallel)
        {
            std::vector<float>& row = tile_buffer(size_t(k));
#pragma omp for schedule(static)
            for (int64_t j = 0; j < w.rows; ++j) {
                dequantize_rows(w, j, j + 1, row.data());
                for (int64_t r = 0; r < m; ++r) {
                    const float v = cpu::dot(row.data(), x + r * k, k);
                    y[r * n + j] = accumulate ? y[r * n + j] + v : v;
                }
            }
        }
        return;
    }
    cpu::use_blas_threads(m_threads);
    const int64_t step = tile_rows(w);
    std::vector<float>& tile = tile_buffer(size_t(step * k));
    for (int64_t r0 = 0; r0 < w.rows; r0 += step) {
        const int64_t r1 = std::min(w.rows, r0 + step);
        dequantize_rows(w, r0, r1, tile.data());
        cpu::parallel_sgemm(m_threads, false, true, m, r1 - r0, k, 1.0f, x, k, tile.data(), k,
                            accumulate ? 1.0f : 0.0f, y + r0, n);
    }
}

void CpuBackend::do_nf4_linear_backward(Tensor din, Tensor dout, const Nf4Weight& w, int64_t dout_col,
                                        bool accumulate_din)
{
    const int64_t m = dout.rows(), k = w.cols, n = dout.cols();
    const float* dy = dout.as<float>() + dout_col;
    float* dx = din.as<float>();
    cpu::use_blas_threads(m_threads);
    const int64_t step = tile_rows(w);
    std::vector<float>& tile = tile_buffer(size_t(step * k));
    // din = Σ over row tiles of dout[:, tile]·W[tile, :]: the first tile sets
    // (or adds to) din, the rest add.
    for (int64_t r0 = 0; r0 < w.rows; r0 += step) {
        const int64_t r1 = std::min(w.rows, r0 + step);
        dequantize_rows(w, r0, r1, tile.data());
        const float beta = (r0 == 0 && !accumulate_din) ? 0.0f : 1.0f;
        cpu::parallel_sgemm(m_threads, false, false, m, k, r1 - r0, 1.0f, dy + r0, n, tile.data(), k, beta, dx, k);
    }
}

} // namespace crucible
