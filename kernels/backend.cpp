#include "kernels/backend.h"

#include "kernels/error.h"

#include <algorithm>
#include <new>

namespace crucible {

void* Backend::workspace(size_t bytes)
{
    if (bytes > m_workspace_bytes) {
        release_workspace();
        m_workspace = allocate(bytes);
        m_workspace_bytes = bytes;
    }
    return m_workspace;
}

void* Backend::allocate_host(size_t bytes)
{
    if (bytes == 0) return nullptr;
    void* p = ::operator new(bytes, std::nothrow);
    if (!p) throw Error("out of host memory: " + std::to_string(bytes) + " bytes requested");
    return p;
}

void Backend::deallocate_host(void* ptr) { ::operator delete(ptr); }

void Backend::release_workspace()
{
    if (m_workspace) deallocate(m_workspace);
    m_workspace = nullptr;
    m_workspace_bytes = 0;
}

void Backend::classifier(Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x,
                         Tensor weight, Tensor targets, float grad_scale)
{
    const int64_t n = x.rows();
    const int64_t vocab = weight.rows();
    const bool backward = !dx.empty() || !dweight.empty();
    expect_shape(losses, Shape{n}, "classifier losses");
    expect_shape(targets, Shape{n}, "classifier targets");

    const int64_t chunk = std::min<int64_t>(n, kClassifierChunkRows);
    const DType dt = compute_dtype();
    void* scratch = workspace(dtype_bytes(dt, chunk * vocab));
    for (int64_t begin = 0; begin < n; begin += chunk) {
        const int64_t end = std::min(n, begin + chunk);
        const int64_t rows = end - begin;
        Tensor logits(scratch, dt, Shape{rows, vocab}, device());
        Tensor xs = x.slice_rows(begin, end);
        linear_forward(logits, xs, weight);
        softmax_cross_entropy(losses.slice_rows(begin, end),
                              correct.empty() ? Tensor() : correct.slice_rows(begin, end), logits,
                              targets.slice_rows(begin, end), grad_scale, backward);
        if (backward) {
            linear_backward(dx.empty() ? Tensor() : dx.slice_rows(begin, end), dweight, logits, xs,
                            weight, false);
        }
    }
}

} // namespace crucible
