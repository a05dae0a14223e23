// Backend: the one interface between the engine and the hardware.
//
// Every operation the model, the optimizers and generation need is a method
// here, forward and backward. CpuBackend (fp32, OpenBLAS + OpenMP) is the
// reference; CudaBackend (bf16 activations and weights, fp32 accumulation,
// fp32 master weights and gradients) is checked against it op by op
// (tests/kernels/tst_op_parity.cpp).
//
// The public ops are not virtual: each checks its arguments once, for every
// backend (dtypes, shapes, the device the tensors live on), and then calls
// the backend's private do_<op> implementation, which may assume them. A
// backend checks only its own limits there (which shapes a kernel takes, how
// many rows one launch holds) and values it has to read anyway (token ids
// inside the vocabulary on the CPU).
//
// Conventions
// - Outputs first, then inputs, then sizes/hyper-parameters.
// - All tensors are contiguous, row-major and live on this backend's device.
// - "Activations" are in compute_dtype() (f32 on CPU, bf16 on CUDA); weights
//   passed to forward ops are the compute-dtype copy; weight gradients,
//   optimizer state, master weights, norm statistics (rstd, mean, lse) and
//   losses are always f32. Token ids and targets are i32.
// - Shapes are checked by element count and last dimension: [B·T, C] and
//   [B, T, C] are the same matrix of rows to every op.
// - Weight gradients are ACCUMULATED (+=), so micro-batches add up naturally;
//   the trainer zeroes them once per optimizer step. Activation gradients are
//   overwritten unless the op takes an `accumulate` flag.
// - A Linear weight is stored [out, in] (Hugging Face layout): y = x · Wᵀ.
// - Attention works on the packed projection output qkv of shape
//   [B·T, (H + 2·KV)·D]: the H query heads, then KV key heads, then KV value
//   heads of each token, as produced by one GEMM with q_proj, k_proj and
//   v_proj stacked. Query head h reads key/value head h / (H / KV) (GQA).
// - RoPE is the half-split ("rotate half") convention of Hugging Face Llama:
//   pairs (i, i + D/2), angle = pos · theta^(-2i/D).
//
// Each worker thread owns its own backend instance; a backend is not
// thread-safe. Every failure throws crucible::Error.
//
// Checklist: a new backend
// 1. derives from Backend, passing its device and compute dtype, and
//    declares its implementations with one line per group of hooks listed
//    before the class: CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_BACKEND_OVERRIDE),
//    plus each optional group it has a version of its own for;
// 2. implements them: do_<op> of each public op below, whose comment says
//    the semantics; the arguments are already checked;
// 3. passes tst_op_parity, which runs every op on every backend it can make
//    against the CPU reference and fails for an op without a row, and the
//    model-level tests (tst_cuda_training shows how).
// A new op: a public method in its group below with its checks (backend.cpp),
// a line in its hook list, an implementation in every backend, a row in
// tst_op_parity (with an fp64 reference in tests/kernels/reference_ops.h).
// A new dtype (NF4 weights, say): decide which ops take it and widen those
// ops' checks in backend.cpp (activations and forward weights must be the
// compute dtype today), implement the ops for it in every backend (one may
// throw for a dtype it lacks, as a limit of its own), and give the parity
// table rows in that dtype.
#pragma once

#include "kernels/nf4_weight.h"
#include "kernels/tensor.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace crucible {

struct AttentionShape {
    int64_t batch = 1;
    int64_t seq = 1;
    int64_t n_heads = 1;
    int64_t n_kv_heads = 1;
    int64_t head_dim = 1;

    int64_t tokens() const { return batch * seq; }
    int64_t q_dim() const { return n_heads * head_dim; }
    int64_t kv_dim() const { return n_kv_heads * head_dim; }
    int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
    int64_t group() const { return n_heads / n_kv_heads; }
};

// Which attention implementation the backend uses. Flash never materialises
// the T×T scores; naive does (kept for the benchmark dashboard and as a peer).
// flash picks the best flash kernel for the device; flash_portable and
// flash_hopper name one of them (for tests and side-by-side timing). A
// backend without a Hopper kernel for the shape runs the portable one for
// flash_hopper: DeviceFacts' "hopper attention" detail says whether it has one.
enum class AttentionKind { flash, naive, flash_portable, flash_hopper };

struct AdamWHyper {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;
    float grad_scale = 1.0f;   // multiplies the gradient first (global-norm clipping)
    int64_t step = 1;          // 1-based, for bias correction
};

struct MuonHyper {
    float lr = 0.02f;
    float momentum = 0.95f;
    float weight_decay = 0.0f;
    bool nesterov = true;
    int ns_steps = 5;
    float grad_scale = 1.0f;   // multiplies the gradient first (global-norm clipping)
    float update_scale = 1.0f; // shape-dependent factor applied to the orthogonalised update
};

// What a device holds, read when asked (each training step samples it).
struct MemoryInfo {
    size_t total_bytes = 0;   // the device's memory (CPU: the machine's RAM)
    size_t free_bytes = 0;    // what may still be allocated (CUDA: the driver's free; CPU: MemAvailable)
    // Held by this process: CUDA, the bytes of this backend's live allocations;
    // CPU, the process's resident set (weights, corpus, libraries and the app alike).
    size_t used_bytes = 0;
    size_t peak_bytes = 0;    // the high-water mark of used_bytes (CPU: VmHWM)
};

// Facts about the device for `crucible-cli info` and the System page.
struct DeviceFacts {
    std::string name;                                     // "NVIDIA H200", "AMD EPYC (2 threads)"
    std::vector<std::pair<std::string, std::string>> details; // ordered key/value pairs
    double peak_tflops = 0.0;                             // dense peak in compute dtype, for MFU
};

// ---- The implementation hooks --------------------------------------------------
// Every virtual a backend implements, one X(type, op, parameters) line each,
// grouped like the public ops: Backend declares do_<op> for each, a backend
// overrides a whole group with one line (CRUCIBLE_BACKEND_OVERRIDE below),
// and tst_op_parity checks that every op of these groups but the device's
// (identity and memory, which every row uses) has a row.
#define CRUCIBLE_BACKEND_DEVICE_HOOKS(X)                                                                    \
    X(std::string, name, () const)                                                                          \
    X(DeviceFacts, facts, () const)                                                                         \
    X(MemoryInfo, memory_info, () const)                                                                    \
    X(void*, allocate, (size_t bytes))                                                                      \
    X(void, deallocate, (void* ptr))                                                                        \
    X(void, synchronize, ())

#define CRUCIBLE_BACKEND_TRANSFER_HOOKS(X)                                                                  \
    X(void, upload, (Tensor dst, const void* host_src, DType host_dtype))                                   \
    X(void, download, (void* host_dst, DType host_dtype, Tensor src))                                       \
    X(void, convert, (Tensor dst, Tensor src))                                                              \
    X(void, fill, (Tensor dst, float value))

#define CRUCIBLE_BACKEND_ELEMENTWISE_HOOKS(X)                                                               \
    X(void, add, (Tensor out, Tensor a, Tensor b))                                                          \
    X(void, dropout_scale, (Tensor out, Tensor in, float scale, float drop_p, uint64_t seed))

#define CRUCIBLE_BACKEND_TRAINING_HOOKS(X)                                                                  \
    X(void, embedding_forward, (Tensor out, Tensor tokens, Tensor table))                                   \
    X(void, embedding_backward, (Tensor dtable, Tensor tokens, Tensor dout))                                \
    X(void, linear_forward, (Tensor out, Tensor in, Tensor weight, bool accumulate))                        \
    X(void, linear_backward, (Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,           \
                              bool accumulate_din))                                                         \
    X(void, rmsnorm_forward, (Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps))                 \
    X(void, rmsnorm_backward, (Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight,            \
                               Tensor rstd, bool accumulate_dx))                                            \
    X(void, layernorm_forward, (Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight,             \
                                Tensor bias, float eps))                                                    \
    X(void, layernorm_backward, (Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x,           \
                                 Tensor weight, Tensor mean, Tensor rstd, bool accumulate_dx))              \
    X(void, qk_norm_forward, (Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight,                 \
                              Tensor k_weight, const AttentionShape& s, float eps))                         \
    X(void, qk_norm_backward, (Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out,        \
                               Tensor qkv_in, Tensor q_weight, Tensor k_weight, Tensor rstd,               \
                               const AttentionShape& s))                                                    \
    X(void, rope_forward, (Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta))          \
    X(void, rope_backward, (Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta))        \
    X(void, attention_forward, (Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s))              \
    X(void, attention_backward, (Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,             \
                                 const AttentionShape& s))                                                  \
    X(void, swiglu_forward, (Tensor out, Tensor gate_up))                                                   \
    X(void, swiglu_backward, (Tensor dgate_up, Tensor dout, Tensor gate_up))                                \
    X(void, gelu_forward, (Tensor out, Tensor in))                                                          \
    X(void, gelu_backward, (Tensor din, Tensor dout, Tensor in))                                            \
    X(void, softmax_cross_entropy, (Tensor losses, Tensor correct, Tensor logits, Tensor targets,          \
                                    float grad_scale, bool compute_grad))

#define CRUCIBLE_BACKEND_OPTIMIZER_HOOKS(X)                                                                 \
    X(double, sum_squares, (Tensor x))                                                                      \
    X(void, adamw_step, (Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v,              \
                         const AdamWHyper& h))                                                              \
    X(void, muon_step, (Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count,  \
                        int64_t stride, const MuonHyper& h))                                                \
    X(void, newton_schulz, (Tensor out, Tensor in, int steps))

#define CRUCIBLE_BACKEND_DECODE_HOOKS(X)                                                                    \
    X(void, rope_forward_at, (Tensor qkv, const AttentionShape& s, Tensor positions, float theta))         \
    X(void, kv_cache_write, (Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions,                 \
                             const AttentionShape& s))                                                      \
    X(void, attention_decode, (Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,  \
                               const AttentionShape& s))                                                    \
    X(void, argmax_rows, (Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens))

// Every backend implements these.
#define CRUCIBLE_BACKEND_NF4_HOOKS(X)                                                                       \
    X(void, nf4_dequantize, (Tensor out, const Nf4Weight& w))                                               \
    X(void, nf4_linear_forward, (Tensor out, Tensor in, const Nf4Weight& w, int64_t out_col, bool accumulate)) \
    X(void, nf4_linear_backward, (Tensor din, Tensor dout, const Nf4Weight& w, int64_t dout_col,          \
                                  bool accumulate_din))

#define CRUCIBLE_BACKEND_REQUIRED_HOOKS(X)                                                                  \
    CRUCIBLE_BACKEND_DEVICE_HOOKS(X)                                                                        \
    CRUCIBLE_BACKEND_NF4_HOOKS(X)                                                                           \
    CRUCIBLE_BACKEND_TRANSFER_HOOKS(X)                                                                      \
    CRUCIBLE_BACKEND_ELEMENTWISE_HOOKS(X)                                                                   \
    CRUCIBLE_BACKEND_TRAINING_HOOKS(X)                                                                      \
    CRUCIBLE_BACKEND_OPTIMIZER_HOOKS(X)                                                                     \
    CRUCIBLE_BACKEND_DECODE_HOOKS(X)

// Optional: Backend has a version that works (ordinary host memory, the
// chunked classifier) or declines (no fused ops, no graphs).
#define CRUCIBLE_BACKEND_HOST_MEMORY_HOOKS(X)                                                               \
    X(void*, allocate_host, (size_t bytes))                                                                 \
    X(void, deallocate_host, (void* ptr))

#define CRUCIBLE_BACKEND_CLASSIFIER_HOOKS(X)                                                                \
    X(void, classifier, (Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x,               \
                         Tensor weight, Tensor targets, float grad_scale))

#define CRUCIBLE_BACKEND_FUSED_DECODE_HOOKS(X)                                                              \
    X(bool, decode_norm_qkv, (Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor x, Tensor norm_weight,    \
                              float eps, Tensor weight, Tensor positions, const AttentionShape& s,         \
                              float theta, const EmbeddingLookup& lookup))                                  \
    X(bool, decode_norm_linear, (Tensor out, Tensor x, Tensor norm_weight, float eps, Tensor weight,       \
                                 bool swiglu))

#define CRUCIBLE_BACKEND_GRAPH_HOOKS(X)                                                                     \
    X(int64_t, capture_graph, (const std::function<void()>& ops))                                           \
    X(uint64_t, graph_epoch, () const)                                                                      \
    X(void, replay_graph, (int64_t graph))                                                                  \
    X(void, release_graph, (int64_t graph))

#define CRUCIBLE_BACKEND_OPTIONAL_HOOKS(X)                                                                  \
    CRUCIBLE_BACKEND_HOST_MEMORY_HOOKS(X)                                                                   \
    CRUCIBLE_BACKEND_CLASSIFIER_HOOKS(X)                                                                    \
    CRUCIBLE_BACKEND_FUSED_DECODE_HOOKS(X)                                                                  \
    CRUCIBLE_BACKEND_GRAPH_HOOKS(X)

// In a backend's class body: CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)
// declares do_<op> of every required op as an override.
#define CRUCIBLE_BACKEND_OVERRIDE(type, op, params) type do_##op params override;

class Backend {
public:
    virtual ~Backend() = default;
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    // ==== identity and memory =====================================================
    DeviceKind device() const { return m_device_kind; }
    DType compute_dtype() const { return m_compute_dtype; }
    std::string name() const { return do_name(); }
    DeviceFacts facts() const { return do_facts(); }
    MemoryInfo memory_info() const { return do_memory_info(); }
    void set_attention_kind(AttentionKind kind) { m_attention_kind = kind; }
    AttentionKind attention_kind() const { return m_attention_kind; }

    void* allocate(size_t bytes) { return do_allocate(bytes); }   // throws Error when out of memory
    void deallocate(void* ptr) { do_deallocate(ptr); }
    void synchronize() { do_synchronize(); }
    // Page-locked host memory, which this backend's ops may also read and
    // write directly (CUDA maps it into the device's address space): a
    // decode step's token upload is queued from it and its greedy picks are
    // written straight into it, so both ride in the step's graph. Ordinary
    // memory on the CPU.
    void* allocate_host(size_t bytes) { return do_allocate_host(bytes); }   // throws Error when out of memory
    void deallocate_host(void* ptr) { do_deallocate_host(ptr); }

    // ==== transfers =================================================================
    // Host <-> device transfers and device-side copies. Equal dtypes copy as
    // they are (i32, u8 and nf4 included); f32, bf16 and f16 also convert
    // into one another (round to nearest even). download waits for the data.
    // A same-dtype upload from allocate_host memory is only queued (and a
    // graph captures it): the host may overwrite its source only after
    // synchronize(); from other memory the source may be reused at once.
    void upload(Tensor dst, const void* host_src, DType host_dtype);
    void download(void* host_dst, DType host_dtype, Tensor src);
    // Device-side copy; converts when dtypes differ (e.g. f32 master -> bf16).
    void convert(Tensor dst, Tensor src);
    // Every element = value: f32, bf16, f16, or i32 with an integer value.
    void fill(Tensor dst, float value);

    // ==== elementwise ===============================================================
    // out = a + b (out may alias a or b)
    void add(Tensor out, Tensor a, Tensor b);
    // out = in · scale, each element kept with probability 1 - drop_p and then
    // divided by it, or zeroed (inverted dropout; drop_p 0 keeps all). Which
    // elements drop depends only on (seed, element index) (kernels/dropout_mask.h),
    // so the backward is this same call on the gradient. out may alias in.
    void dropout_scale(Tensor out, Tensor in, float scale, float drop_p, uint64_t seed);

    // ==== training ops ==============================================================
    // ---- embedding
    // out[n, :] = table[tokens[n], :]            out [N, C], tokens [N], table [V, C]
    void embedding_forward(Tensor out, Tensor tokens, Tensor table);
    // dtable[tokens[n], :] += dout[n, :], deterministically (no atomics races)
    void embedding_backward(Tensor dtable, Tensor tokens, Tensor dout);

    // ---- linear
    // out [M, N] = in [M, K] · weightᵀ (weight [N, K]); out += ... when accumulate
    void linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate = false);
    // din [M, K] = dout · weight (+= when accumulate_din); dweight [N, K] += doutᵀ · in.
    // Either output may be empty to skip it.
    void linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                         bool accumulate_din = false);

    // ---- NF4 weights (QLoRA's frozen base; kernels/nf4_weight.h)
    // out [rows, cols] = the dequantized weight, in the compute dtype.
    void nf4_dequantize(Tensor out, const Nf4Weight& w);
    // out[:, out_col : out_col + w.rows] (+)= in [M, w.cols] · Wᵀ: out [M, N]
    // may be a stacked projection's output, W one of its parts. The weight is
    // dequantized on the fly (one row or a few: a fused GEMV that reads the
    // 4-bit codes once; more: into scratch tiles or a layer buffer, then a GEMM).
    void nf4_linear_forward(Tensor out, Tensor in, const Nf4Weight& w, int64_t out_col = 0, bool accumulate = false);
    // din [M, w.cols] (+)= dout[:, dout_col : dout_col + w.rows] · W. The base
    // is frozen: no weight gradient.
    void nf4_linear_backward(Tensor din, Tensor dout, const Nf4Weight& w, int64_t dout_col = 0,
                             bool accumulate_din = false);

    // ---- normalisation (over the last dimension)
    // out = x / rms(x) * weight; rstd [rows] saved for the backward
    void rmsnorm_forward(Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps);
    // dx (= or += per accumulate_dx); dweight += (may be empty to skip it)
    void rmsnorm_backward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd,
                          bool accumulate_dx);
    // out = (x - mean) * rstd * weight + bias; mean and rstd [rows]
    void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias, float eps);
    // dx (= or += per accumulate_dx); dweight, dbias += (either may be empty)
    void layernorm_backward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
                            Tensor mean, Tensor rstd, bool accumulate_dx);

    // ---- attention block
    // Per-head RMSNorm of the query and key heads of packed qkv (Qwen3's QK-norm);
    // value heads are copied unchanged. rstd [B·T, H + KV]. qkv_out may be qkv_in.
    void qk_norm_forward(Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight, Tensor k_weight,
                         const AttentionShape& s, float eps);
    // dqkv_in is overwritten (it may be dqkv_out); dq_weight, dk_weight += (either may be empty).
    void qk_norm_backward(Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out, Tensor qkv_in,
                          Tensor q_weight, Tensor k_weight, Tensor rstd, const AttentionShape& s);
    // Rotate the query and key heads of packed qkv in place; token t of each
    // sequence sits at position pos_offset + t.
    void rope_forward(Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta);
    // The inverse rotation applied to the gradient, in place.
    void rope_backward(Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta);
    // Causal self-attention, scale 1/sqrt(D). out [B·T, H·D]; lse [B, H, T] is the
    // log-sum-exp of each query's scaled scores, saved for the backward.
    void attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s);
    // dqkv [B·T, (H + 2·KV)·D] is overwritten.
    void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse, const AttentionShape& s);

    // ---- MLP
    // gate_up [N, 2F] holds gate then up for each row; out [N, F] = silu(gate) * up
    void swiglu_forward(Tensor out, Tensor gate_up);
    void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up);
    // Exact (erf) GELU.
    void gelu_forward(Tensor out, Tensor in);
    void gelu_backward(Tensor din, Tensor dout, Tensor in);

    // ---- classifier
    // In place over logits [N, V]: losses[n] = logsumexp(logits[n]) - logits[n, targets[n]];
    // correct[n] = (argmax == target) when `correct` (i32 or f32) is given; when
    // compute_grad, logits[n] becomes (softmax - onehot(target)) * grad_scale.
    // Targets < 0 are ignored (loss 0, gradient 0).
    void softmax_cross_entropy(Tensor losses, Tensor correct, Tensor logits, Tensor targets, float grad_scale,
                               bool compute_grad);
    // The whole head: logits = x · weightᵀ, cross-entropy, and when dx or
    // dweight is given the backward into dx (overwritten) and dweight (+=).
    // By default in chunks of rows through the ops above, so that the full
    // [N, V] logits never exist at once; backends may fuse further.
    void classifier(Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                    Tensor targets, float grad_scale);

    // ==== reductions and optimizers =================================================
    // Σ x² of an f32 tensor, in double, deterministic for a given backend.
    double sum_squares(Tensor x);
    // One AdamW step (decoupled weight decay) over f32 param/grad/m/v of the same
    // size; when param_compute (f32, bf16 or f16) is given it receives the
    // updated weights in its dtype.
    void adamw_step(Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v, const AdamWHyper& h);
    // One Muon step for `count` matrices of shape [rows, cols] laid out `stride`
    // elements apart starting at the given views (param/grad/momentum share the
    // layout): momentum = μ·momentum + g; u = g + μ·momentum (Nesterov) or momentum;
    // O = NewtonSchulz(u); param = param·(1 - lr·wd) - lr·update_scale·O.
    void muon_step(Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count, int64_t stride,
                   const MuonHyper& h);
    // Batched Newton–Schulz orthogonalisation: in/out [count, rows, cols] (f32),
    // quintic iteration with coefficients (3.4445, -4.7750, 2.0315) on
    // X / (‖X‖_F + 1e-7), transposing tall matrices.
    void newton_schulz(Tensor out, Tensor in, int steps);

    // ==== KV cache and decode =======================================================
    // A layer's KV cache is two tensors, keys and values, each [S, KV, P, D]
    // in compute dtype: S sequence slots, KV heads, P positions, head_dim D, so
    // that the keys one query reads are contiguous. The ops below take a chunk
    // of B sequences × T new tokens as packed qkv [B·T, (H + 2·KV)·D] (row r
    // belongs to slot b = r / T) and `positions`, i32 [B·T]: the position of
    // each row in its sequence. A negative position marks a padding row (a
    // sequence with fewer new tokens than T, or none): every op skips it.
    // Positions must be below P; a chunk's rows continue their sequence where
    // its cache ends.

    // RoPE (as rope_forward) of the query and key heads of row r at positions[r].
    void rope_forward_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta);
    // Copies the key and value heads of every non-padding row r into
    // k_cache[r / T, :, positions[r], :] and v_cache[r / T, :, positions[r], :].
    void kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions, const AttentionShape& s);
    // Attention of row r's query heads over the cached keys and values of its
    // slot at positions [0, positions[r]], scale 1/sqrt(D), GQA as above. The
    // chunk's own keys are written first (kv_cache_write), which makes the
    // chunk causal. out [B·T, H·D]; padding rows get zeros.
    void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                          const AttentionShape& s);
    // Greedy choice over rows of logits [R, V] (compute dtype): ids i32 [R]
    // gets each row's largest logit (the lowest id among equals), probs f32
    // [R] its softmax probability. Decoding greedily then moves R ids off the
    // device instead of R·V logits. next_tokens, unless empty (i32 [R], device
    // memory), receives the ids too: in a decode burst each step's picks are
    // the next step's input without a trip through the host.
    void argmax_rows(Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens);

    // ==== fused decode (optional) ===================================================
    // A decode step takes one token of each of a few sequences through every
    // layer, and at that size each op costs a launch more than it costs work.
    // These do several of the ops above in one pass and return false when the
    // backend has no fused version for these shapes and dtypes; the caller
    // then runs the separate ops, whose results these equal within rounding.
    // RMSNorm here is rmsnorm_forward's.
    //
    // qkv = RMSNorm(x)·Wᵀ, with RoPE at `positions` (rope_forward_at) and
    // the new keys and values written into the cache (kv_cache_write).
    // x [B·T, C]: T = s.seq tokens per sequence, 1 in a decode step, a few
    // in a speculative verification chunk. In the first layer `lookup` may
    // name the step's tokens and the embedding table: x is then first looked
    // up (embedding_forward) and written, one launch fewer per step.
    struct EmbeddingLookup {
        Tensor tokens;   // i32 [B·T]; empty: x is given
        Tensor table;    // [V, C]
    };
    bool decode_norm_qkv(Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor x, Tensor norm_weight, float eps,
                         Tensor weight, Tensor positions, const AttentionShape& s, float theta,
                         const EmbeddingLookup& lookup);
    // out = RMSNorm(x)·Wᵀ; with swiglu, W stacks gate and up (as the MLP's
    // input projection) and out = swiglu_forward of that product.
    bool decode_norm_linear(Tensor out, Tensor x, Tensor norm_weight, float eps, Tensor weight, bool swiglu);

    // ==== graphs (optional) =========================================================
    // Records the device work `ops` issues into a graph that replay_graph()
    // re-issues with one launch (CUDA graphs), so a decode step of hundreds of
    // small kernels costs one launch. Only pointers and shapes are baked in:
    // data read from device memory (tokens, positions) may change between
    // replays. `ops` must not allocate or synchronise. Returns 0 when the
    // backend has no graphs or capture failed; the caller then runs `ops`
    // directly. Capturing does not execute the work.
    int64_t capture_graph(const std::function<void()>& ops);
    // Changes whenever memory a graph may have baked in (scratch, tables) is
    // reallocated: graphs captured under another epoch must be recaptured.
    uint64_t graph_epoch() const { return do_graph_epoch(); }
    // Replays a graph capture_graph() returned (never 0).
    void replay_graph(int64_t graph);
    void release_graph(int64_t graph) { do_release_graph(graph); }

    // Scratch memory for chunked ops, grown on demand and owned by the backend.
    void* workspace(size_t bytes);

protected:
    Backend(DeviceKind device, DType compute_dtype) : m_device_kind(device), m_compute_dtype(compute_dtype) {}
    // Derived destructors call this while their deallocate() still works.
    void release_workspace();

private:
#define CRUCIBLE_BACKEND_PURE(type, op, params) virtual type do_##op params = 0;
#define CRUCIBLE_BACKEND_DEFAULT(type, op, params) virtual type do_##op params;
    CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_BACKEND_PURE)
    CRUCIBLE_BACKEND_OPTIONAL_HOOKS(CRUCIBLE_BACKEND_DEFAULT)
#undef CRUCIBLE_BACKEND_PURE
#undef CRUCIBLE_BACKEND_DEFAULT

    DeviceKind m_device_kind;
    DType m_compute_dtype;
    AttentionKind m_attention_kind = AttentionKind::flash;
    void* m_workspace = nullptr;
    size_t m_workspace_bytes = 0;
};

// Newton–Schulz coefficients (Keller Jordan's quintic), shared by all backends.
inline constexpr float kMuonA = 3.4445f;
inline constexpr float kMuonB = -4.7750f;
inline constexpr float kMuonC = 2.0315f;

// Rows of the classifier processed per chunk: bounds the logits workspace to
// chunk × V elements.
inline constexpr int64_t kClassifierChunkRows = 1024;

} // namespace crucible
