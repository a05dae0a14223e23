// CpuBackend: identity, memory, transfers, fill and add.
//
// Device memory is host memory, 64-byte aligned. Transfers and convert share
// one conversion routine: f32 <-> bf16 (round to nearest even, NaN kept a
// NaN), f32 <-> f16 (F16C, also round to nearest even), bf16 <-> f16 through
// f32; equal dtypes (i32, u8, nf4 included) are copied as bytes.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/dropout_mask.h"

#include "kernels/cpu/cpu_kernels.h"

#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

namespace crucible {

namespace {

bool cpu_has_avx512()
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
}

bool openblas_core_uses_avx512(const std::string& core)
{
    for (const char* name : {"SkylakeX", "Cooperlake", "SapphireRapids"})
        if (core.find(name) != std::string::npos) return true;
    return false;
}

std::string openblas_core() { return openblas_get_corename(); }

std::string cpu_model_name()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(colon + 1);
                const auto first = name.find_first_not_of(" \t");
                return first == std::string::npos ? "CPU" : name.substr(first);
            }
        }
    }
    return "CPU";
}

// The clock the system reports, in GHz: the cpufreq maximum where the kernel
// exposes it, else the largest "cpu MHz" (often the base clock in a VM).
double reported_clock_ghz()
{
    std::ifstream max_freq("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    double khz = 0.0;
    if (max_freq >> khz && khz > 0.0) return khz / 1e6;
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    double mhz = 0.0;
    while (std::getline(in, line)) {
        if (line.rfind("cpu MHz", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) mhz = std::max(mhz, std::atof(line.c_str() + colon + 1));
        }
    }
    return mhz > 0.0 ? mhz / 1e3 : 2.0;
}

// The clock one core actually runs at, in GHz: a chain of dependent integer
// adds retires one add per cycle, so adds per second is the frequency. The
// best of a few 1 ms runs discounts preemption. 0 where not measurable.
double measured_clock_ghz()
{
#if defined(__x86_64__) || defined(__aarch64__)
    constexpr int64_t kIterations = 1 << 16, kAddsPerIteration = 16;
    double best = 0.0;
    for (int run = 0; run < 5; ++run) {
        uint64_t x = 0;
        const auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < kIterations; ++i) {
#if defined(__x86_64__)
#define CRUCIBLE_ADD_ONE __asm__ volatile("add $1, %0" : "+r"(x));
#else
#define CRUCIBLE_ADD_ONE __asm__ volatile("add %0, %0, #1" : "+r"(x));
#endif
            CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE
            CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE
            CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE
            CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE CRUCIBLE_ADD_ONE
#undef CRUCIBLE_ADD_ONE
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (seconds > 0.0) best = std::max(best, double(kIterations * kAddsPerIteration) / seconds / 1e9);
    }
    return best;
#else
    return 0.0;
#endif
}

// The clock for the peak estimate, in GHz: the higher of the reported and the
// measured clock (turbo included). Computed once per process.
double cpu_clock_ghz()
{
    static const double ghz = std::max(reported_clock_ghz(), measured_clock_ghz());
    return ghz;
}

size_t meminfo_kib(const std::string& text, const char* key)
{
    const auto at = text.find(key);
    if (at == std::string::npos) return 0;
    return static_cast<size_t>(std::strtoull(text.c_str() + at + std::strlen(key), nullptr, 10));
}

// Decimal units, as every size the app and the CLI show.
std::string format_gb(size_t bytes)
{
    std::ostringstream s;
    s.precision(3);
    s << double(bytes) / 1e9 << " GB";
    return s.str();
}

// ---- element conversion ------------------------------------------------------

template <class Body>
void parallel_for(int threads, int64_t n, Body body)
{
#pragma omp parallel for num_threads(threads) schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) body(i);
}

constexpr int dtype_pair(DType from, DType to) { return int(from) * 16 + int(to); }

void convert_elements(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, int threads)
{
    if (n == 0) return;
    if (dst_dtype == src_dtype) {
        const size_t bytes = dtype_bytes(dst_dtype, n);
        constexpr size_t kChunk = size_t(1) << 20;
        const auto chunks = static_cast<int64_t>((bytes + kChunk - 1) / kChunk);
        if (dst != src) {
            parallel_for(threads, chunks, [&](int64_t c) {
                const size_t begin = size_t(c) * kChunk;
                std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin,
                            std::min(kChunk, bytes - begin));
            });
        }
        return;
    }
    using cpu::bf16_from_f32;
    using cpu::f16_from_f32;
    using cpu::f32_from_bf16;
    using cpu::f32_from_f16;
    const auto* f = static_cast<const float*>(src);
    const auto* h = static_cast<const uint16_t*>(src);
    auto* fo = static_cast<float*>(dst);
    auto* ho = static_cast<uint16_t*>(dst);
    switch (dtype_pair(src_dtype, dst_dtype)) {
    case dtype_pair(DType::f32, DType::bf16):
        parallel_for(threads, n, [&](int64_t i) { ho[i] = bf16_from_f32(f[i]); });
        return;
    case dtype_pair(DType::bf16, DType::f32):
        parallel_for(threads, n, [&](int64_t i) { fo[i] = f32_from_bf16(h[i]); });
        return;
    case dtype_pair(DType::f32, DType::f16):
        parallel_for(threads, n, [&](int64_t i) { ho[i] = f16_from_f32(f[i]); });
        return;
    case dtype_pair(DType::f16, DType::f32):
        parallel_for(threads, n, [&](int64_t i) { fo[i] = f32_from_f16(h[i]); });
        return;
    case dtype_pair(DType::bf16, DType::f16):
        parallel_for(threads, n, [&](int64_t i) { ho[i] = f16_from_f32(f32_from_bf16(h[i])); });
        return;
    case dtype_pair(DType::f16, DType::bf16):
        parallel_for(threads, n, [&](int64_t i) { ho[i] = bf16_from_f32(f32_from_f16(h[i])); });
        return;
    default:
        throw Error(std::string("cannot convert ") + dtype_name(src_dtype) + " to " + dtype_name(dst_dtype) +
                    ": only f32, bf16 and f16 convert into one another; other types copy as they are");
    }
}

} // namespace

namespace cpu {

void use_blas_threads(int threads)
{
    if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
}

} // namespace cpu

// ---- identity ------------------------------------------------------------------------

CpuBackend::CpuBackend(int threads) : Backend(DeviceKind::cpu, DType::f32)
{
    m_threads = threads > 0 ? threads : std::max(1, omp_get_num_procs());
    cpu::use_blas_threads(m_threads);
}

CpuBackend::~CpuBackend()
{
    release_workspace();
    std::free(m_scratch);
}

std::string CpuBackend::do_name() const
{
    return "CPU (" + std::to_string(m_threads) + (m_threads == 1 ? " thread)" : " threads)");
}

DeviceFacts CpuBackend::do_facts() const
{
    DeviceFacts f;
    const std::string model = cpu_model_name();
    f.name = model + " (" + std::to_string(m_threads) + (m_threads == 1 ? " thread)" : " threads)");

    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = cpu_has_avx512();
    const std::string core = openblas_core();
    std::string simd = avx2 ? "AVX2, FMA" : (__builtin_cpu_supports("avx") ? "AVX" : "SSE");
    if (avx512) simd += ", AVX-512";

    // Peak estimate for MFU: threads × clock × fp32 FLOPs per cycle, taking two
    // FMA pipes per core at the width of the vectors the GEMM kernels use
    // (2 × 2 × 16 lanes = 64 with AVX-512, 32 with AVX2+FMA, 8 with SSE). An
    // estimate: the clock is one core's, measured when idle, and all-core
    // turbo may run lower; narrower FMA units would halve the real peak.
    const int flops_per_cycle = openblas_core_uses_avx512(core) ? 64 : (avx2 ? 32 : 8);
    const double ghz = cpu_clock_ghz();
    f.peak_tflops = m_threads * ghz * flops_per_cycle / 1e3;

    std::ostringstream clock, peak;
    clock.precision(3);
    clock << ghz << " GHz";
    peak.precision(3);
    peak << f.peak_tflops * 1e3 << " GFLOP/s (estimate: threads × clock × " << flops_per_cycle
         << " FLOP/cycle)";
    f.details = {
        {"Processor", model},
        {"Threads", std::to_string(m_threads)},
        {"SIMD", simd},
        {"Clock", clock.str()},
        {"Peak fp32", peak.str()},
        {"OpenBLAS", openblas_get_config()},
        {"OpenBLAS kernels", core + (std::getenv("OPENBLAS_CORETYPE") ? " (set by OPENBLAS_CORETYPE)" : "")},
    };
    const MemoryInfo mem = memory_info();
    f.details.emplace_back("Memory", format_gb(mem.free_bytes) + " available of " + format_gb(mem.total_bytes));
    return f;
}

MemoryInfo CpuBackend::do_memory_info() const
{
    std::ifstream in("/proc/meminfo");
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    MemoryInfo info;
    info.total_bytes = meminfo_kib(s, "MemTotal:") * 1024;
    size_t available = meminfo_kib(s, "MemAvailable:");
    if (available == 0) available = meminfo_kib(s, "MemFree:");
    info.free_bytes = available * 1024;
    // The process's resident set: statm's second field, in pages.
    std::ifstream statm("/proc/self/statm");
    unsigned long long size_pages = 0, resident_pages = 0;
    if (statm >> size_pages >> resident_pages) info.used_bytes = size_t(resident_pages) * size_t(sysconf(_SC_PAGESIZE));
    std::ifstream status("/proc/self/status");
    std::stringstream status_text;
    status_text << status.rdbuf();
    info.peak_bytes = std::max(info.used_bytes, meminfo_kib(status_text.str(), "VmHWM:") * 1024);
    return info;
}

// ---- memory ------------------------------------------------------------------------------

void* CpuBackend::do_allocate(size_t bytes)
{
    constexpr size_t kAlign = 64;
    CRUCIBLE_CHECK(bytes <= SIZE_MAX - kAlign, "cannot allocate " + std::to_string(bytes) + " bytes");
    const size_t rounded = std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    void* ptr = std::aligned_alloc(kAlign, rounded);
    if (!ptr) {
        throw Error("out of host memory: could not allocate " + format_gb(bytes) + " (" +
                    format_gb(memory_info().free_bytes) +
                    " available); choose a smaller model, batch or sequence length");
    }
    return ptr;
}

void CpuBackend::do_deallocate(void* ptr) { std::free(ptr); }
   
   void CpuBackend::do_synchronize() {}   // every op has finished when it returns
   
   float* CpuBackend::scratch(size_t floats)
{
    const size_t bytes = floats * sizeof(float);
    if (bytes > m_scratch_bytes) {
        void* grown = allocate(bytes);   // throws before the old buffer is lost
        std::free(m_scratch);
        m_scratch = grown;
        m_scratch_bytes = bytes;
    }
    return static_cast<float*>(m_scratch);
}

// ---- transfers ------------------------------------------------------------------------------

void CpuBackend::do_upload(Tensor dst, const void* host_src, DType host_dtype)
{
    convert_elements(dst.data, dst.dtype, host_src, host_dtype, dst.numel(), m_threads);
}

void CpuBackend::do_download(void* host_dst, DType host_dtype, Tensor src)
{
    convert_elements(host_dst, host_dtype, src.data, src.dtype, src.numel(), m_threads);
}

void CpuBackend::do_convert(Tensor dst, Tensor src)
{
    convert_elements(dst.data, dst.dtype, src.data, src.dtype, src.numel(), m_threads);
}

void CpuBackend::do_fill(Tensor dst, float value)
{
    const int64_t n = dst.numel();
    switch (dst.dtype) {
    case DType::f32: {
        float* p = dst.as<float>();
        parallel_for(m_threads, n, [&](int64_t i) { p[i] = value; });
        return;
    }
    case DType::bf16:
    case DType::f16: {
        const uint16_t bits = dst.dtype == DType::bf16 ? cpu::bf16_from_f32(value) : cpu::f16_from_f32(value);
        uint16_t* p = dst.as<uint16_t>();
        parallel_for(m_threads, n, [&](int64_t i) { p[i] = bits; });
        return;
    }
    case DType::i32: {
        const auto v = static_cast<int32_t>(value);
        int32_t* p = dst.as<int32_t>();
        parallel_for(m_threads, n, [&](int64_t i) { p[i] = v; });
        return;
    }
    default:   // Backend::fill lets no other dtype through
        throw Error(std::string("fill: unsupported dtype ") + dtype_name(dst.dtype));
    }
}

// ---- elementwise ------------------------------------------------------------------------------

void CpuBackend::do_add(Tensor out, Tensor a, Tensor b)
{
    const int64_t n = out.numel();
    float* o = out.as<float>();
    const float* x = a.as<float>();
    const float* y = b.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork * 4)
    for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
}

void CpuBackend::do_dropout_scale(Tensor out, Tensor in, float scale, float drop_p, uint64_t seed)
{
    const int64_t n = out.numel();
    float* o = out.as<float>();
    const float* x = in.as<float>();
    if (drop_p == 0.0f) {
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork * 4)
        for (int64_t i = 0; i < n; ++i) o[i] = x[i] * scale;
        return;
    }
    const uint32_t threshold = dropout_threshold(drop_p);
    const float kept = scale / (1.0f - drop_p);
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork * 4)
    for (int64_t i = 0; i < n; ++i) o[i] = dropout_keeps(seed, uint64_t(i), threshold) ? x[i] * kept : 0.0f;
}

} // namespace crucible
