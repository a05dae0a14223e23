#include "tests/support/test_support.h"

#include "core/util/rng.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <sys/wait.h>

namespace crucible::test {

ModelConfig tiny_model(int seq_len)
{
    ModelConfig m;
    m.name = "tiny";
    m.vocab_size = 320;
    m.d_model = 64;
    m.n_layers = 2;
    m.n_heads = 4;
    m.n_kv_heads = 2;
    m.ff_dim = 128;
    m.seq_len = seq_len;
    return m;
}

std::vector<float> random_vector(size_t n, uint64_t seed, float scale)
{
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal()) * scale;
    return v;
}

std::vector<int32_t> random_ids(size_t n, int32_t limit, uint64_t seed)
{
    Rng rng(seed);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(limit)));
    return v;
}

void perturb_vectors(ParamStore& params, uint64_t seed, float scale)
{
    std::vector<float> host = params.download_master();
    for (const auto& e : params.layout().entries()) {
        if (e.is_matrix()) continue;
        const auto noise = random_vector(size_t(e.numel()), seed++, scale);
        for (int64_t i = 0; i < e.numel(); ++i) host[size_t(e.offset + i)] += noise[size_t(i)];
    }
    params.upload_master(host);
}

void perturb_all(ParamStore& params, uint64_t seed, float scale)
{
    std::vector<float> host = params.download_master();
    const auto noise = random_vector(host.size(), seed, scale);
    for (size_t i = 0; i < host.size(); ++i) host[i] += noise[i];
    params.upload_master(host);
}

double relative_error(const std::vector<float>& a, const std::vector<double>& b)
{
    if (a.size() != b.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b)
{
    return relative_error(a, std::vector<double>(b.begin(), b.end()));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b)
{
    if (a.size() != b.size()) return INFINITY;
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = std::fabs(double(a[i]) - double(b[i]));
        if (!(d <= m)) m = d;   // NaN propagates as the maximum
    }
    return m;
}

OwnedTensor::OwnedTensor(Backend& be, DType dtype, Shape shape) : backend(&be)
{
    ptr = be.allocate(std::max<size_t>(dtype_bytes(dtype, shape.numel()), 1));
    t = Tensor(ptr, dtype, shape, be.device());
}

OwnedTensor::OwnedTensor(Backend& be, DType dtype, Shape shape, const std::vector<float>& host)
    : OwnedTensor(be, dtype, shape)
{
    CRUCIBLE_CHECK(int64_t(host.size()) == shape.numel(), "host data does not match the shape");
    be.upload(t, host.data(), DType::f32);
}

OwnedTensor::OwnedTensor(Backend& be, Shape shape, const std::vector<int32_t>& host)
    : OwnedTensor(be, DType::i32, shape)
{
    CRUCIBLE_CHECK(int64_t(host.size()) == shape.numel(), "host data does not match the shape");
    be.upload(t, host.data(), DType::i32);
}

OwnedTensor::~OwnedTensor()
{
    if (backend && ptr) backend->deallocate(ptr);
}

OwnedTensor::OwnedTensor(OwnedTensor&& o) noexcept { *this = std::move(o); }

OwnedTensor& OwnedTensor::operator=(OwnedTensor&& o) noexcept
{
    if (this != &o) {
        if (backend && ptr) backend->deallocate(ptr);
        backend = o.backend;
        ptr = o.ptr;
        t = o.t;
        o.backend = nullptr;
        o.ptr = nullptr;
        o.t = Tensor();
    }
    return *this;
}

std::vector<float> OwnedTensor::to_host() const
{
    std::vector<float> host(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::i32) {
        std::vector<int32_t> ids(host.size());
        backend->download(ids.data(), DType::i32, t);
        for (size_t i = 0; i < ids.size(); ++i) host[i] = float(ids[i]);
    } else {
        backend->download(host.data(), DType::f32, t);
    }
    return host;
}

std::filesystem::path source_dir() { return CRUCIBLE_SOURCE_DIR; }
std::filesystem::path binary_dir() { return CRUCIBLE_BINARY_DIR; }

std::filesystem::path python3()
{
    // Debian's interpreter carries python3-torch; a python3 earlier on PATH may not.
    if (std::filesystem::exists("/usr/bin/python3")) return "/usr/bin/python3";
    return "python3";
}

bool python_has_torch()
{
    return run_command(python3().string() + " -c 'import torch, numpy' 2>/dev/null") == 0;
}

int run_command(const std::string& command, std::string* output)
{
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (!pipe) return -1;
    std::array<char, 4096> buf{};
    std::string out;
    while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
    const int status = pclose(pipe);
    if (output) *output = out;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace crucible::test
