// Shared helpers of the GPU suites: run one op on the CPU reference and on a
// CUDA backend from the same host data, and measure how far apart they land.
//
// Activation buffers take the backend's compute dtype. In bf16 mode the host
// values are rounded to bf16 before either backend sees them, so the CPU
// (f32) computes on exactly the inputs the GPU has and the comparison
// measures only the rounding the GPU op itself adds.
#pragma once

#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace crucible::test {

inline float round_bf16(float x)
{
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;   // inf / nan
    u += 0x7fffu + ((u >> 16) & 1u);                  // round to nearest even
    u &= 0xffff0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
}

inline std::vector<float> rounded_for(const Backend& be, std::vector<float> v)
{
    if (be.compute_dtype() == DType::bf16)
        for (auto& x : v) x = round_bf16(x);
    return v;
}

enum class Role { act, f32, i32 };

// One tensor of an op: its role, shape, initial host values, and whether the
// op's result in it is compared.
struct Buf {
    std::string name;
    Role role = Role::act;
    Shape shape;
    std::vector<float> host;        // act / f32 (empty = zeros)
    std::vector<int32_t> ids;       // i32
    bool compare = false;

    Buf(std::string name_, Role role_, Shape shape_, std::vector<float> host_ = {}, std::vector<int32_t> ids_ = {},
        bool compare_ = false)
        : name(std::move(name_)), role(role_), shape(shape_), host(std::move(host_)), ids(std::move(ids_)),
          compare(compare_)
    {
    }
};

using OpFn = std::function<void(Backend&, std::vector<Tensor>&)>;

struct CaseResult {
    std::map<std::string, double> error;                  // relative error per compared buffer
    std::map<std::string, std::vector<float>> gpu, cpu;   // the compared results
};

inline CaseResult run_case(Backend& cpu, Backend& gpu, const std::vector<Buf>& bufs, const OpFn& fn)
{
    std::vector<OwnedTensor> on_cpu, on_gpu;
    std::vector<Tensor> tc, tg;
    for (const Buf& b : bufs) {
        if (b.role == Role::i32) {
            std::vector<int32_t> ids = b.ids.empty() ? std::vector<int32_t>(size_t(b.shape.numel()), 0) : b.ids;
            on_cpu.emplace_back(cpu, b.shape, ids);
            on_gpu.emplace_back(gpu, b.shape, ids);
        } else {
            std::vector<float> host = b.host.empty() ? std::vector<float>(size_t(b.shape.numel()), 0.0f) : b.host;
            if (b.role == Role::act) host = rounded_for(gpu, host);
            const DType gdt = b.role == Role::act ? gpu.compute_dtype() : DType::f32;
            on_cpu.emplace_back(cpu, DType::f32, b.shape, host);
            on_gpu.emplace_back(gpu, gdt, b.shape, host);
        }
        tc.push_back(on_cpu.back().t);
        tg.push_back(on_gpu.back().t);
    }
    fn(cpu, tc);
    fn(gpu, tg);
    gpu.synchronize();
    CaseResult r;
    for (size_t i = 0; i < bufs.size(); ++i) {
        if (!bufs[i].compare) continue;
        r.cpu[bufs[i].name] = on_cpu[i].to_host();
        r.gpu[bufs[i].name] = on_gpu[i].to_host();
        r.error[bufs[i].name] = relative_error(r.gpu[bufs[i].name], r.cpu[bufs[i].name]);
    }
    return r;
}

inline std::unique_ptr<Backend> make_cuda(bool fp32)
{
    BackendOptions o;
    o.device = DeviceKind::cuda;
    o.cuda_fp32 = fp32;
    return make_backend(o);
}

inline std::unique_ptr<Backend> make_cpu()
{
    BackendOptions o;
    o.device = DeviceKind::cpu;
    return make_backend(o);
}

} // namespace crucible::test
