#include "core/train/training_setup.h"

#include "core/io/file_util.h"
#include "core/train/finetune.h"
#include "core/train/run_lock.h"
#include "kernels/error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace fs = std::filesystem;

namespace crucible {

namespace {

// What a run killed while it was being created leaves: its lock, and the
// staging of a config.json or tokenizer.model that was never committed.
bool holds_no_work(const fs::path& entry)
{
    const std::string name = entry.filename().string();
    return name == RunLock::kFileName || name.find(".tmp-") != std::string::npos;
}

} // namespace

RunConfig resolve_run_config(const RunConfig& requested, const RunDirectory& run, bool resume)
{
    RunConfig cfg = requested;
    if (resume) {
        if (!run.exists())
            throw Error(run.root().string() + " is not a run to resume (no config.json); start a new run with --out");
        if (::access(run.root().c_str(), W_OK) != 0)
            throw Error("the run folder " + run.root().string() + " is not writable (" + std::strerror(errno) +
                        "); a resumed run writes checkpoints there, so make it writable or copy the run elsewhere");
        cfg = run.read_config();
        // A run trained on a larger machine resumes on this one's cores.
        cfg.train.threads = std::min(cfg.train.threads, default_cpu_threads());
        if (requested.train.steps > cfg.train.steps) cfg.train.steps = requested.train.steps;
    } else {
        std::error_code ec;
        bool empty = true;
        if (fs::is_directory(run.root(), ec))
            for (const auto& e : fs::directory_iterator(run.root(), ec))
                empty = empty && holds_no_work(e.path());
        if (fs::exists(run.root(), ec) && !fs::is_directory(run.root(), ec))
            throw Error(run.root().string() + " is a file, not a folder; choose another output folder");
        if (!empty)
            throw Error(run.root().string() +
                        " already exists and is not empty; choose another output folder or resume it with --resume "
                        "(a run stopped before its first checkpoint then starts over from step 0)");
        // Found out now, not after the tokenizer has been trained.
        fs::path existing = fs::absolute(run.root(), ec);
        while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.parent_path())
            existing = existing.parent_path();
        if (!fs::is_directory(existing, ec))
            throw Error("cannot create the run folder " + run.root().string() + ": " + existing.string() +
                        " is a file, not a folder; choose another output folder");
        if (::access(existing.c_str(), W_OK) != 0)
            throw Error("cannot create the run folder " + run.root().string() + ": " + existing.string() +
                        " is not writable (" + std::strerror(errno) + "); choose another output folder");
    }
    cfg.validate();
    return cfg;
}

BackendOptions backend_options(const TrainConfig& tc, int replica)
{
    BackendOptions bo;
    bo.device = tc.device == "cuda" ? DeviceKind::cuda : DeviceKind::cpu;
    bo.threads = tc.threads;
    if (tc.processes > 1) {
        // One replica in this process: its host's GPU number local_rank.
        if (bo.device == DeviceKind::cuda)
            bo.cuda_device = tc.gpus.empty() ? tc.local_rank : tc.gpus[size_t(tc.local_rank)];
        return bo;
    }
    if (bo.device == DeviceKind::cuda && !tc.gpus.empty()) bo.cuda_device = tc.gpus[size_t(replica)];
    // CPU replicas share the cores.
    if (bo.device == DeviceKind::cpu && tc.cpu_replicas > 1)
        bo.threads = std::max(1, (tc.threads > 0 ? tc.threads : default_cpu_threads()) / tc.cpu_replicas);
    return bo;
}

TrainingDevice open_training_device(const BackendOptions& options, const ModelConfig& model, int batch, int seq_len,
                                    const LoraConfig* lora, bool qlora, bool grad_checkpoint)
{
    TrainingDevice d;
    d.backend = make_backend(options);
    const DType dt = d.backend->compute_dtype();
    d.estimate = lora ? estimate_finetune_memory(model, *lora, batch, seq_len, dt, qlora, grad_checkpoint)
                      : estimate_training_memory(model, batch, seq_len, dt, grad_checkpoint);
    check_fits(d.estimate, d.backend->memory_info().free_bytes, d.backend->name());
    return d;
}

TrainingData load_training_data(const RunConfig& cfg, int seq_len, const std::optional<fs::path>& tokenizer_file,
                                const fs::path& cache_dir, RunReporter& reporter)
{
    const ModelConfig& mc = cfg.model;
    reporter.status("reading the corpus");
    const Corpus corpus = cfg.data.paths.empty() ? Corpus::embedded_default() : Corpus::from_paths(
        std::vector<fs::path>(cfg.data.paths.begin(), cfg.data.paths.end()));
    Tokenizer tokenizer;
    if (tokenizer_file) {
        tokenizer = Tokenizer::load(*tokenizer_file);
    } else {
        reporter.status("training the tokenizer (vocabulary " + std::to_string(mc.vocab_size) + ")");
        TokenizerOptions to;
        to.vocab_size = mc.vocab_size;
        to.threads = cfg.train.threads;
        tokenizer = Tokenizer::train_cached(tokenizer_training_text(corpus, cfg.data.val_fraction), to,
                                            cache_dir / "tokenizers");
    }
    if (tokenizer.vocab_size() != mc.vocab_size)
        throw Error("the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                    " tokens but the model expects " + std::to_string(mc.vocab_size));
    reporter.status("tokenizing the corpus");
    Dataset dataset = Dataset::build(corpus, tokenizer, cfg.data.val_fraction, cache_dir / "tokens", seq_len);
    return {std::move(tokenizer), std::move(dataset)};
}

size_t TrainableModel::bytes() const
{
    return params->bytes() + (lora ? lora->store().bytes() : 0) + (nf4 ? nf4->bytes() : 0) + optimizer->bytes() +
           model->activations().bytes();
}

TrainableModel allocate_model(Backend& backend, const ModelConfig& mc, const TrainConfig& tc, int seq_len,
                              std::optional<ParamRange> owned)
{
    TrainableModel m;
    m.params = std::make_unique<ParamStore>(backend, mc, true);
    m.optimizer = std::make_unique<Optimizer>(*m.params, tc.optimizer, owned);
    m.model = std::make_unique<Transformer>(*m.params, tc.batch_size, seq_len, true, nullptr, tc.grad_checkpoint);
    return m;
}

TrainableModel allocate_model(Backend& backend, const RunConfig& cfg, int seq_len, std::optional<ParamRange> owned)
{
    if (!cfg.finetune) return allocate_model(backend, cfg.model, cfg.train, seq_len, owned);
    CRUCIBLE_CHECK(!owned, "a fine-tune trains on one device");
    const TrainConfig& tc = cfg.train;
    TrainableModel m;
    if (cfg.finetune->qlora) {
        // The base is read on the host, its projections quantized onto the
        // device; only the rest of it is kept in high precision there.
        const ParamLayout full(cfg.model);
        std::vector<float> master;
        {
            auto host = make_backend(BackendOptions{});
            ParamStore whole(*host, cfg.model, false);
            load_base_weights(open_base_model(cfg.finetune->base), whole);
            master = whole.download_master();
        }
        m.nf4 = std::make_unique<Nf4Base>(backend, full, master);
        m.params = std::make_unique<ParamStore>(backend, nf4_base_layout(cfg.model), false, false);
        upload_nf4_base_rest(*m.params, full, master);
    } else {
        // Frozen: no gradients, no optimizer state, and no f32 master copy
        // beside the compute dtype's.
        m.params = std::make_unique<ParamStore>(backend, cfg.model, false, false);
    }
    m.lora = std::make_unique<LoraAdapters>(backend, cfg.model, cfg.finetune->lora, true);
    m.lora->set_dropout_seed(tc.seed);
    m.optimizer = std::make_unique<Optimizer>(m.lora->store(), tc.optimizer);
    m.model = std::make_unique<Transformer>(*m.params, tc.batch_size, seq_len, true, m.lora.get(),
                                            cfg.grad_checkpoint(), m.nf4.get());
    return m;
}

std::optional<fs::path> initial_tokenizer(const RunConfig& cfg)
{
    if (!cfg.finetune) return std::nullopt;
    return open_base_model(cfg.finetune->base).tokenizer_file;
}

void start_new_run(const RunDirectory& run, const RunConfig& cfg, TrainableModel& model, const Tokenizer& tokenizer)
{
    if (cfg.finetune) {
        const BaseModel base = open_base_model(cfg.finetune->base);
        if (!model.nf4) load_base_weights(base, *model.params);   // a QLoRA base is read when allocated
        model.lora->initialize(cfg.train.seed);
        fs::create_directories(run.root());
        run.write_config(cfg);
        tokenizer.save(run.tokenizer_file());
        // Chat templates and special tokens of the base serve the fine-tune too.
        if (base.tokenizer_config)
            write_file_atomic(run.root() / "tokenizer_config.json", base.tokenizer_config->dump(2) + "\n");
        return;
    }
    model.params->initialize(cfg.train.seed);
    fs::create_directories(run.root());
    run.write_config(cfg);
    tokenizer.save(run.tokenizer_file());
}

TrainerState resume_from_checkpoint(const fs::path& checkpoint, TrainableModel& model, Batcher& batcher,
                                    const RunConfig& cfg)
{
    if (cfg.finetune) {
        if (!model.nf4) load_base_weights(open_base_model(cfg.finetune->base), *model.params);
        load_finetune_checkpoint(checkpoint, *model.lora, model.optimizer.get());
    } else {
        load_weights(checkpoint, *model.params);
        // An imported model's first checkpoint has weights only: its training
        // starts with a fresh optimizer state.
        if (fs::exists(checkpoint / "optimizer.safetensors"))
            load_optimizer(checkpoint, *model.optimizer, *model.params);
    }
    TrainerState state = load_trainer_state(checkpoint);
    batcher.set_state(state.batcher);
    return state;
}

void check_steps_left(const TrainerState& state, const TrainConfig& tc)
{
    if (state.step >= tc.steps)
        throw Error("the run already completed " + std::to_string(state.step) +
                    " steps; resume with a larger --steps to train further");
}

RunInfo describe_run(const RunDirectory& run, const RunConfig& cfg, int seq_len, const TrainingDevice& device,
                     const Dataset& dataset, int64_t start_step)
{
    const ModelConfig& mc = cfg.model;
    const TrainConfig& tc = cfg.train;
    RunInfo info;
    info.run_dir = run.root().string();
    const int replicas = tc.replicas();
    info.device = replicas > 1 ? std::to_string(replicas) + " × " + device.backend->name() : device.backend->name();
    info.parameters = count_params(mc).total();
    info.train_tokens = dataset.train_tokens();
    info.val_tokens = dataset.val_tokens();
    info.tokens_per_step = tc.tokens_per_step(mc);
    info.start_step = start_step;
    info.total_steps = tc.steps;
    info.flops_per_token = training_flops_per_token(mc, seq_len);
    info.peak_tflops = device.backend->facts().peak_tflops * replicas;   // MFU of the whole group
    info.estimated_memory_bytes = int64_t(device.estimate.total());
    return info;
}

} // namespace crucible
