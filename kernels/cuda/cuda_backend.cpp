// CudaBackend: construction, device facts, memory and the factory entry
// points. The ops are in their own files (see cuda_backend.h).
#include "kernels/cuda/cuda_backend.h"

#include "kernels/cuda/cuda_check.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace crucible {

namespace cuda {

void throw_cuda_error(const char* file, int line, cudaError_t err, const char* what)
{
    const char* name = cudaGetErrorName(err);
    const char* text = cudaGetErrorString(err);
    cudaGetLastError();   // clear a non-sticky error so the backend stays usable
    throw_error(file, line,
                std::string("CUDA error ") + (name ? name : "?") + ": " + (text ? text : "?") + " (in " + what + ")");
}

} // namespace cuda

namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;   // cuBLASLt's recommendation for Hopper

// Decimal units, as every size the app and the CLI show.
std::string megabytes(size_t bytes)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f MB", double(bytes) / 1e6);
    return buf;
}

std::string version_string(int v)   // 12040 -> "12.4"
{
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Dense (no sparsity) peak rates from the vendors' datasheets, in TFLOP/s:
// bf16 tensor-core with fp32 accumulation, and plain fp32 (no TF32). Matched
// by substring of the lower-cased device name, most specific first.
struct PeakEntry {
    const char* pattern;
    double bf16;
    double fp32;
};
constexpr PeakEntry kPeaks[] = {
    {"gb200", 2500.0, 80.0}, {"b200", 2250.0, 75.0}, {"b100", 1750.0, 60.0},
    {"h200 nvl", 835.0, 60.0}, {"h200", 989.0, 67.0},
    {"h100 nvl", 835.0, 60.0}, {"h100 pcie", 756.0, 51.0}, {"h100", 989.0, 67.0},
    {"h800 pcie", 756.0, 51.0}, {"h800", 989.0, 67.0}, {"h20", 148.0, 44.0},
    {"a100", 312.0, 19.5}, {"a800", 312.0, 19.5}, {"a30", 165.0, 10.3}, {"a40", 149.7, 37.4},
    {"a10g", 70.0, 31.2}, {"a10", 125.0, 31.2}, {"a16", 18.0, 4.5}, {"a2", 18.0, 4.5},
    {"l40s", 362.0, 91.6}, {"l40", 181.0, 90.5}, {"l20", 119.5, 59.8}, {"l4", 121.0, 30.3},
    {"rtx pro 6000", 503.8, 126.0}, {"rtx 6000 ada", 364.2, 91.1}, {"rtx a6000", 154.8, 38.7},
    {"rtx 5090", 209.5, 104.8}, {"rtx 5080", 112.6, 56.3}, {"rtx 4090", 165.2, 82.6},
    {"rtx 4080", 97.5, 48.7}, {"rtx 4070", 58.0, 29.0}, {"rtx 3090", 71.0, 35.6},
    {"rtx 3080", 59.5, 29.8}, {"rtx 3070", 40.6, 20.3},
};

const PeakEntry* find_peak(const std::string& device_name)
{
    std::string lower = device_name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (const auto& e : kPeaks)
        if (lower.find(e.pattern) != std::string::npos) return &e;
    return nullptr;
}

} // namespace

CudaBackend::CudaBackend(const BackendOptions& options)
    : Backend(DeviceKind::cuda, options.cuda_fp32 ? DType::f32 : DType::bf16), m_device(options.cuda_device),
      m_fp32(options.cuda_fp32)
{
    int count = 0;
    CRUCIBLE_CUDA_CHECK(cudaGetDeviceCount(&count));
    CRUCIBLE_CHECK(m_device >= 0 && m_device < count,
                   "CUDA device " + std::to_string(m_device) + " does not exist (" + std::to_string(count) +
                       " device(s) found)");
    CRUCIBLE_CUDA_CHECK(cudaSetDevice(m_device));
    CRUCIBLE_CUDA_CHECK(cudaGetDeviceProperties(&m_props, m_device));
    CRUCIBLE_CHECK(m_props.major >= 8, std::string("the CUDA device ") + m_props.name + " has compute capability " +
                                           std::to_string(m_props.major) + "." + std::to_string(m_props.minor) +
                                           "; Crucible's CUDA kernels need 8.0 (Ampere) or newer");
    CRUCIBLE_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
    const cublasStatus_t st = cublasLtCreate(&m_lt);
    CRUCIBLE_CHECK(st == CUBLAS_STATUS_SUCCESS, std::string("cuBLASLt could not be initialised: ") +
                                                    cublasGetStatusString(st));
    m_lt_workspace_bytes = kLtWorkspaceBytes;
    m_lt_workspace = allocate(m_lt_workspace_bytes);
    CRUCIBLE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m_host_result), 64));
}

CudaBackend::~CudaBackend()
{
    // Nothing here may throw: release quietly, in reverse order.
    if (m_stream) cudaStreamSynchronize(m_stream);
    release_workspace();
    for (auto& [id, exec] : m_graphs) cudaGraphExecDestroy(exec);
    for (auto& [key, plan] : m_gemm_plans) {
        if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
        if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
        if (plan.b) cublasLtMatrixLayoutDestroy(plan.b);
        if (plan.c) cublasLtMatrixLayoutDestroy(plan.c);
    }
    if (m_rope) cudaFree(m_rope);
    if (m_scratch) cudaFree(m_scratch);
    if (m_counters) cudaFree(m_counters);
    if (m_lt_workspace) cudaFree(m_lt_workspace);
    if (m_host_result) cudaFreeHost(m_host_result);
    if (m_lt) cublasLtDestroy(m_lt);
    if (m_stream) cudaStreamDestroy(m_stream);
    cudaGetLastError();
}

std::string CudaBackend::do_name() const
{
    return std::string("CUDA ") + m_props.name + (m_fp32 ? " (f32)" : " (bf16)");
}

DeviceFacts CudaBackend::do_facts() const
{
    DeviceFacts f;
    f.name = m_props.name;
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    const size_t lt = cublasLtGetVersion();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    char buf[128];
    auto add = [&](const std::string& k, const std::string& v) { f.details.emplace_back(k, v); };
    add("device", std::to_string(m_device));
    add("compute capability", std::to_string(m_props.major) + "." + std::to_string(m_props.minor));
    add("multiprocessors", std::to_string(m_props.multiProcessorCount));
    add("hopper attention", hopper_attention_detail(m_props));
    std::snprintf(buf, sizeof buf, "%.1f GB (%.1f GB free)", double(total_b) / 1e9, double(free_b) / 1e9);
    add("memory", buf);
    std::snprintf(buf, sizeof buf, "%.0f MB", double(m_props.l2CacheSize) / 1e6);
    add("L2 cache", buf);
    add("driver CUDA version", version_string(driver));
    add("runtime CUDA version", version_string(runtime));
    add("cuBLASLt version", std::to_string(lt / 10000) + "." + std::to_string((lt / 100) % 100) + "." +
                                std::to_string(lt % 100));
    add("compute dtype", m_fp32 ? "f32 (parity mode)" : "bf16, fp32 accumulation");
    if (const PeakEntry* p = find_peak(m_props.name)) {
        f.peak_tflops = m_fp32 ? p->fp32 : p->bf16;
        std::snprintf(buf, sizeof buf, "%.1f TFLOP/s dense %s (datasheet)", f.peak_tflops, m_fp32 ? "fp32" : "bf16");
        add("peak", buf);
    } else {
        add("peak", "unknown for this GPU (MFU not reported)");
    }
    return f;
}

MemoryInfo CudaBackend::do_memory_info() const
{
    MemoryInfo m;
    CRUCIBLE_CUDA_CHECK(cudaMemGetInfo(&m.free_bytes, &m.total_bytes));
    const std::lock_guard<std::mutex> lock(m_live_mutex);
    m.used_bytes = m_live_bytes;
    m.peak_bytes = m_peak_bytes;
    return m;
}

void* CudaBackend::do_allocate(size_t bytes)
{
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw_error(__FILE__, __LINE__,
                    "CUDA out of memory on " + std::string(m_props.name) + ": requested " + megabytes(bytes) + ", " +
                        megabytes(free_b) + " free of " + megabytes(total_b) + " (" + cudaGetErrorString(err) +
                        "). Use a smaller batch, sequence length or model.");
    }
    const std::lock_guard<std::mutex> lock(m_live_mutex);
    m_live.emplace(p, bytes);
    m_live_bytes += bytes;
    m_peak_bytes = std::max(m_peak_bytes, m_live_bytes);
    return p;
}

void CudaBackend::do_deallocate(void* ptr)
{
    // Called from destructors: never throws. Pending work may still use the
    // memory, so finish it first.
    if (!ptr) return;
    cudaStreamSynchronize(m_stream);
    cudaFree(ptr);
    cudaGetLastError();
    const std::lock_guard<std::mutex> lock(m_live_mutex);
    if (const auto it = m_live.find(ptr); it != m_live.end()) {
        m_live_bytes -= it->second;
        m_live.erase(it);
    }
}

void* CudaBackend::do_allocate_host(size_t bytes)
{
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t err = cudaMallocHost(&p, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        throw_error(__FILE__, __LINE__,
                    "could not page-lock " + megabytes(bytes) + " of host memory (" + cudaGetErrorString(err) + ")");
    }
    return p;
}

void CudaBackend::do_deallocate_host(void* ptr)
{
    if (!ptr) return;
    cudaStreamSynchronize(m_stream);   // a queued copy may still use it
    cudaFreeHost(ptr);
    cudaGetLastError();
}

void CudaBackend::do_synchronize()
{
    CRUCIBLE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
}

void CudaBackend::regrow(void*& buffer, size_t& bytes, size_t needed, size_t minimum)
{
    deallocate(buffer);   // waits for queued work that may still use the old one
    buffer = nullptr;
    bytes = 0;
    ++m_graph_epoch;   // graphs that baked in the old address are stale
    const size_t grown = std::max(needed, minimum);
    buffer = allocate(grown);
    bytes = grown;
}

void* CudaBackend::scratch(size_t bytes)
{
    if (bytes > m_scratch_bytes) regrow(m_scratch, m_scratch_bytes, bytes, size_t(1) << 20);
    return m_scratch;
}

int* CudaBackend::zeroed_counters(size_t count)
{
    if (count * sizeof(int) > m_counter_bytes) {
        regrow(m_counters, m_counter_bytes, count * sizeof(int), 4096 * sizeof(int));
        CRUCIBLE_CUDA_CHECK(cudaMemsetAsync(m_counters, 0, m_counter_bytes, m_stream));
    }
    return static_cast<int*>(m_counters);
}

// ---- factory --------------------------------------------------------------------------

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options)
{
    return std::make_unique<CudaBackend>(options);
}

int cuda_device_count_impl(std::string* why_not)
{
    auto fail = [&](const std::string& why) {
        if (why_not) *why_not = why;
        return 0;
    };
    int driver = 0, runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
        cudaGetLastError();
        return fail("no NVIDIA driver was found (libcuda is not installed or not loadable)");
    }
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        cudaGetLastError();
        if (err == cudaErrorInsufficientDriver)
            return fail("the NVIDIA driver is too old: it supports CUDA " + version_string(driver) +
                        " but this build needs CUDA " + version_string(runtime) + "; update the driver");
        if (err == cudaErrorNoDevice) return fail("no CUDA device was found");
        return fail(std::string("CUDA could not be initialised: ") + cudaGetErrorString(err));
    }
    if (count == 0) return fail("no CUDA device was found");
    int usable = 0;
    std::string old;
    for (int d = 0; d < count; ++d) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        if (p.major >= 8) ++usable;
        else old = std::string(p.name) + " (compute capability " + std::to_string(p.major) + "." +
                   std::to_string(p.minor) + ")";
    }
    if (usable == 0)
        return fail("the CUDA device " + old + " is too old: Crucible's CUDA kernels need compute capability 8.0 "
                    "(Ampere) or newer");
    if (why_not) why_not->clear();
    return usable;
}

} // namespace crucible
