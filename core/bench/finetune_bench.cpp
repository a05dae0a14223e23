#include "core/bench/finetune_bench.h"

#include "core/generate/cached_forward.h"
#include "core/generate/kv_cache.h"
#include "core/model/lora.h"
#include "core/model/nf4_base.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/train/memory_estimate.h"
#include "core/util/rng.h"

#include <cmath>
#include <memory>

namespace crucible {

const char* to_string(FinetuneMode mode)
{
    switch (mode) {
    case FinetuneMode::full: return "full fine-tune";
    case FinetuneMode::lora: return "LoRA";
    case FinetuneMode::qlora: return "QLoRA";
    }
    return "";
}

namespace {

size_t used_between(const MemoryInfo& before, const MemoryInfo& after, size_t fallback)
{
    return before.free_bytes > after.free_bytes ? before.free_bytes - after.free_bytes : fallback;
}

// The random base every mode starts from, on the host.
std::vector<float> random_base(const ModelConfig& c)
{
    auto host = make_backend(BackendOptions{});
    ParamStore p(*host, c, false);
    p.initialize(1);
    return p.download_master();
}

FinetuneBenchRow run_mode(const FinetuneBenchOptions& o, const LoraConfig& lora, const std::vector<float>& master,
                          FinetuneMode mode, bool checkpoint)
{
    const ModelConfig& c = o.model;
    const int seq = o.seq > 0 ? o.seq : c.seq_len;
    FinetuneBenchRow row;
    row.mode = mode;
    row.grad_checkpoint = checkpoint;
    auto backend = make_backend(o.backend);
    Backend& be = *backend;
    const DType dt = be.compute_dtype();
    {
        const MemoryInfo before = be.memory_info();
        std::unique_ptr<Nf4Base> nf4;
        std::unique_ptr<ParamStore> params;
        std::unique_ptr<LoraAdapters> adapters;
        OptimizerConfig oc;
        oc.lr = o.lr;
        if (mode == FinetuneMode::qlora) {
            nf4 = std::make_unique<Nf4Base>(be, ParamLayout(c), master);
            params = std::make_unique<ParamStore>(be, nf4_base_layout(c), false, false);
            upload_nf4_base_rest(*params, ParamLayout(c), master);
        } else {
            const bool full = mode == FinetuneMode::full;   // a frozen base keeps no f32 master copy
            params = std::make_unique<ParamStore>(be, c, full, full);
            params->upload_master(master);
        }
        if (mode != FinetuneMode::full) {
            adapters = std::make_unique<LoraAdapters>(be, c, lora, true);
            adapters->initialize(2);
        }
        ParamStore& trained = adapters ? adapters->store() : *params;
        Optimizer optimizer(trained, oc);
        Transformer model(*params, o.batch, seq, true, adapters.get(), checkpoint, nf4.get());

        Rng rng(7);
        std::vector<int32_t> tokens(size_t(o.batch) * size_t(seq)), targets(tokens.size());
        for (size_t i = 0; i < tokens.size(); ++i) {
            tokens[i] = int32_t(rng.below(uint64_t(c.vocab_size)));
            targets[i] = int32_t(rng.below(uint64_t(c.vocab_size)));
        }
        const float scale = 1.0f / float(tokens.size());
        auto step = [&] {
            trained.zero_grads();
            model.train_micro_batch(tokens.data(), targets.data(), o.batch, seq, scale);
            optimizer.step(1.0);
        };
        row.step = time_repeated(be, step, o.warmup_steps, o.timed_steps);
        row.tokens_per_s = double(tokens.size()) / (row.step.median_ms / 1e3);
        row.base_weight_bytes = params->bytes() - (mode == FinetuneMode::full ? size_t(dtype_bytes(DType::f32, params->layout().total())) : 0) +
                                (nf4 ? nf4->bytes() : 0);
        row.activation_bytes = model.activations().bytes();
        const size_t buffers = params->bytes() + (nf4 ? nf4->bytes() : 0) + (adapters ? adapters->store().bytes() : 0) +
                               optimizer.bytes() + model.activations().bytes();
        row.device_bytes = be.device() == DeviceKind::cpu ? buffers : used_between(before, be.memory_info(), buffers);
    }
    const MemoryEstimate e = mode == FinetuneMode::full
        ? estimate_training_memory(c, o.batch, seq, dt, checkpoint)
        : estimate_finetune_memory(c, lora, o.batch, seq, dt, mode == FinetuneMode::qlora, checkpoint);
    row.estimate_bytes = e.total();
    return row;
}

// Greedy decode tokens/s at batch 1, after a short prompt.
double decode_rate(const FinetuneBenchOptions& o, const std::vector<float>& master, bool nf4_weights)
{
    const ModelConfig& c = o.model;
    auto backend = make_backend(o.backend);
    Backend& be = *backend;
    std::unique_ptr<Nf4Base> nf4;
    std::unique_ptr<ParamStore> params;
    if (nf4_weights) {
        nf4 = std::make_unique<Nf4Base>(be, ParamLayout(c), master);
        params = std::make_unique<ParamStore>(be, nf4_base_layout(c), false);
        upload_nf4_base_rest(*params, ParamLayout(c), master);
    } else {
        params = std::make_unique<ParamStore>(be, c, false);
        params->upload_master(master);
    }
    const int warmup = 4, prompt = 8;
    const int64_t context = std::min<int64_t>(c.seq_len, prompt + warmup + o.decode_tokens + 1);
    const int steps = int(context) - prompt - warmup - 1;
    KvCache cache(be, c, 1, context);
    CachedForward gen(*params, cache, context, 1, nullptr, nf4.get());
    std::vector<int32_t> ids(size_t(prompt), 1);
    std::vector<int32_t> picks;
    std::vector<float> probs;
    gen.append_greedy(ids, std::vector<int64_t>{prompt}, prompt, std::vector<int64_t>{prompt - 1}, picks, probs);
    int32_t next = picks.empty() ? 1 : picks[0];
    auto one = [&] {
        const int32_t t[1] = {next};
        gen.append_greedy(t, std::vector<int64_t>{1}, 1, std::vector<int64_t>{0}, picks, probs);
        next = picks[0];
    };
    const Timing t = time_repeated(be, one, warmup, std::max(1, steps));
    return 1e3 / t.median_ms;
}

} // namespace

FinetuneBenchResult run_finetune_bench(const FinetuneBenchOptions& o)
{
    o.model.validate();
    LoraConfig lora = o.lora;
    if (lora.targets.empty()) lora.targets = parse_lora_targets("all-linear", o.model);
    lora.validate(o.model);
    const std::vector<float> master = random_base(o.model);
    FinetuneBenchResult r;
    r.device = make_backend(o.backend)->name();
    for (FinetuneMode mode : {FinetuneMode::full, FinetuneMode::lora, FinetuneMode::qlora})
        for (bool checkpoint : {false, true}) r.rows.push_back(run_mode(o, lora, master, mode, checkpoint));
    if (o.decode_tokens > 0) {
        r.decode_dense_tokens_per_s = decode_rate(o, master, false);
        r.decode_nf4_tokens_per_s = decode_rate(o, master, true);
    }
    return r;
}

BenchTable finetune_bench_table(const FinetuneBenchResult& r, const std::string& preset)
{
    BenchTable t;
    t.name = "bench finetune";
    t.device = r.device;
    t.columns = {{"device_mb", "memory MB", 1},     {"estimate_mb", "estimate MB", 1},
                 {"base_weight_mb", "base weights MB", 1}, {"activation_mb", "activations MB", 1},
                 {"step_ms", "ms/step", 1},           {"tokens_per_s", "tok/s", 0},
                 {"memory_vs_full", "memory / full", 3}, {"time_vs_lora", "time / LoRA", 3}};
    const double mb = 1e6;
    auto find = [&](FinetuneMode m, bool ck) -> const FinetuneBenchRow* {
        for (const auto& row : r.rows)
            if (row.mode == m && row.grad_checkpoint == ck) return &row;
        return nullptr;
    };
    for (const auto& row : r.rows) {
        const FinetuneBenchRow* full = find(FinetuneMode::full, false);
        const FinetuneBenchRow* lora = find(FinetuneMode::lora, row.grad_checkpoint);
        BenchRow b;
        b.label = std::string(to_string(row.mode)) + (row.grad_checkpoint ? ", checkpointed" : "");
        b.values = {double(row.device_bytes) / mb,
                    double(row.estimate_bytes) / mb,
                    double(row.base_weight_bytes) / mb,
                    double(row.activation_bytes) / mb,
                    row.step.median_ms,
                    row.tokens_per_s,
                    full ? double(row.device_bytes) / double(full->device_bytes) : NAN,
                    row.mode != FinetuneMode::full && lora ? row.step.median_ms / lora->step.median_ms : NAN};
        t.rows.push_back(b);
    }
    t.notes.push_back("preset " + preset + "; memory / full: against the full fine-tune without checkpointing; "
                      "time / LoRA: against LoRA with the same checkpointing. Base weights: the model in the compute "
                      "dtype (and its f32 master where that differs), or NF4 with double quant plus the "
                      "high-precision embeddings, norms and head.");
    if (r.decode_dense_tokens_per_s > 0)
        t.notes.push_back("greedy decode, batch 1: dense " + std::to_string(int(std::lround(r.decode_dense_tokens_per_s))) +
                          " tok/s, NF4 " + std::to_string(int(std::lround(r.decode_nf4_tokens_per_s))) + " tok/s (" +
                          std::to_string(r.decode_nf4_tokens_per_s / r.decode_dense_tokens_per_s).substr(0, 5) +
                          "× dense)");
    return t;
}

} // namespace crucible
