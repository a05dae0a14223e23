#include "core/train/run_config.h"

#include "core/util/json_read.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"

namespace crucible {

std::vector<std::string> RunConfig::problems() const
{
    std::vector<std::string> p = model.problems();
    auto need = [&](bool ok, const std::string& msg) { if (!ok) p.push_back(msg); };
    const TrainConfig& t = train;
    need(t.batch_size >= 1 && t.batch_size <= 65536, "batch size must be between 1 and 65536");
    need(t.grad_accum >= 1 && t.grad_accum <= 4096, "gradient accumulation must be between 1 and 4096");
    need(t.steps >= 1, "steps must be at least 1");
    need(t.seq_len >= 0 && t.seq_len <= model.seq_len,
         "training sequence length must be at most the model's seq_len (" + std::to_string(model.seq_len) + ")");
    need(t.seq_len == 0 || t.seq_len >= 2, "training sequence length must be at least 2");
    need(t.eval_every >= 0 && t.eval_batches >= 0 && t.checkpoint_every >= 0 && t.sample_every >= 0,
         "evaluation, sample and checkpoint intervals must be 0 (off) or positive");
    need(t.sample_tokens >= 0 && t.sample_tokens <= 4096, "sample length must be between 0 and 4096 tokens");
    need(t.sample_temperature >= 0.0f, "sample temperature must be 0 (greedy) or positive");
    need(t.target_bits_per_byte >= 0.0f, "target bits per byte must be 0 (off) or positive");
    need(t.device == "cpu" || t.device == "cuda", "device must be \"cpu\" or \"cuda\", got \"" + t.device + "\"");
    if (auto s = cpu_threads_problem(t.threads); !s.empty()) p.push_back(s);
    need(t.on_nonfinite == "skip" || t.on_nonfinite == "stop",
         "on_nonfinite must be \"skip\" or \"stop\", got \"" + t.on_nonfinite + "\"");
    need(t.cpu_replicas >= 1 && t.cpu_replicas <= 64, "CPU replicas must be between 1 and 64");
    need(t.device == "cuda" || t.gpus.empty(), "GPUs are chosen only when training on \"cuda\"");
    if (t.processes > 1) {
        need(t.cpu_replicas == 1, "a job of several processes runs one replica in each: leave out --cpu-replicas");
        need(t.device != "cuda" || t.gpus.empty() || t.local_rank < int(t.gpus.size()),
             "--gpus lists " + std::to_string(t.gpus.size()) + " GPU(s) but this process has local rank " +
                 std::to_string(t.local_rank) + ": list one GPU for each process of a host, or leave --gpus out "
                 "(process k then trains on GPU k)");
    }
    for (size_t i = 0; i < t.gpus.size(); ++i) {
        need(t.gpus[i] >= 0, "GPU numbers start at 0, got " + std::to_string(t.gpus[i]));
        for (size_t k = 0; k < i; ++k)
            need(t.gpus[k] != t.gpus[i], "GPU " + std::to_string(t.gpus[i]) + " is listed twice");
    }
    for (const auto& s : t.optimizer.problems()) p.push_back(s);
    // The schedule is measured against the steps: with no valid step count,
    // its complaints would be about a number the user never chose.
    if (t.steps >= 1)
        if (auto s = t.schedule.problems(t.steps); !s.empty()) p.push_back(s);
    need(data.val_fraction > 0.0 && data.val_fraction < 0.9, "validation fraction must be in (0, 0.9)");
    if (finetune) {
        need(!finetune->base.empty(), "a fine-tune needs a base model");
        need(t.optimizer.type == OptimizerType::adamw, "LoRA adapters train with AdamW; choose --optimizer adamw");
        for (const auto& s : finetune->lora.problems(model)) p.push_back(s);
        need(t.replicas() == 1, "a fine-tune trains on one device for now: leave out --gpus and --cpu-replicas");
    }
    return p;
}

void RunConfig::validate() const
{
    const auto p = problems();
    if (p.empty()) return;
    std::string msg = "invalid run configuration:";
    for (const auto& s : p) msg += "\n  - " + s;
    throw Error(msg);
}

nlohmann::json to_json(const TrainConfig& c)
{
    return {{"batch_size", c.batch_size},
            {"grad_accum", c.grad_accum},
            {"steps", c.steps},
            {"seq_len", c.seq_len},
            {"seed", c.seed},
            {"optimizer", to_json(c.optimizer)},
            {"schedule", to_json(c.schedule)},
            {"eval_every", c.eval_every},
            {"eval_batches", c.eval_batches},
            {"checkpoint_every", c.checkpoint_every},
            {"sample_every", c.sample_every},
            {"sample_tokens", c.sample_tokens},
            {"sample_prompt", c.sample_prompt},
            {"sample_temperature", c.sample_temperature},
            {"target_bits_per_byte", c.target_bits_per_byte},
            {"device", c.device},
            {"threads", c.threads},
            {"on_nonfinite", c.on_nonfinite},
            {"gpus", c.gpus},
            {"cpu_replicas", c.cpu_replicas},
            {"grad_checkpoint", c.grad_checkpoint},
            {"overlap_comm", c.overlap_comm}};
}

nlohmann::json to_json(const DataConfig& c)
{
    return {{"paths", c.paths}, {"val_fraction", c.val_fraction}};
}

nlohmann::json to_json(const RunConfig& c)
{
    nlohmann::json j = {
        {"format", "crucible-run-1"}, {"model", to_json(c.model)}, {"train", to_json(c.train)}, {"data", to_json(c.data)}};
    if (c.finetune)
        j["finetune"] = {{"base", c.finetune->base},
                         {"lora", to_json(c.finetune->lora)},
                         {"qlora", c.finetune->qlora},
                         {"grad_checkpoint", c.finetune->grad_checkpoint}};
    return j;
}

TrainConfig train_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "train",
                 {"batch_size", "grad_accum", "steps", "seq_len", "seed", "optimizer", "schedule", "eval_every",
                  "eval_batches", "checkpoint_every", "sample_every", "sample_tokens", "sample_prompt",
                  "sample_temperature", "target_bits_per_byte", "device", "threads", "on_nonfinite", "gpus",
                  "cpu_replicas", "grad_checkpoint", "overlap_comm"});
    TrainConfig c;
    r.read("batch_size", c.batch_size);
    r.read("grad_accum", c.grad_accum);
    r.read("steps", c.steps);
    r.read("seq_len", c.seq_len);
    r.read("seed", c.seed);
    if (auto* o = r.child("optimizer")) c.optimizer = optimizer_config_from_json(*o);
    if (auto* s = r.child("schedule")) c.schedule = schedule_config_from_json(*s);
    r.read("eval_every", c.eval_every);
    r.read("eval_batches", c.eval_batches);
    r.read("checkpoint_every", c.checkpoint_every);
    r.read("sample_every", c.sample_every);
    r.read("sample_tokens", c.sample_tokens);
    r.read("sample_prompt", c.sample_prompt);
    r.read("sample_temperature", c.sample_temperature);
    r.read("target_bits_per_byte", c.target_bits_per_byte);
    r.read("device", c.device);
    r.read("threads", c.threads);
    r.read("gpus", c.gpus);
    r.read("cpu_replicas", c.cpu_replicas);
    r.read("overlap_comm", c.overlap_comm);
    r.read("on_nonfinite", c.on_nonfinite);
    r.read("grad_checkpoint", c.grad_checkpoint);
    return c;
}

DataConfig data_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "data", {"paths", "val_fraction"});
    DataConfig c;
    r.read("paths", c.paths);
    r.read("val_fraction", c.val_fraction);
    return c;
}

RunConfig run_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "run config", {"format", "model", "train", "data", "finetune"});
    RunConfig c;
    if (auto* f = r.child("finetune"); f && !f->is_null()) {
        JsonReader fr(*f, "finetune", {"base", "lora", "qlora", "grad_checkpoint"});
        FinetuneConfig ft;
        fr.read("base", ft.base);
        fr.read("qlora", ft.qlora);
        fr.read("grad_checkpoint", ft.grad_checkpoint);
        if (auto* l = fr.child("lora")) ft.lora = lora_config_from_json(*l);
        c.finetune = ft;
    }
    // Without its model a run's configuration would silently describe another model.
    const nlohmann::json* m = r.child("model");
    if (!m) throw Error("run config has no \"model\" section; restore it or start from a preset");
    c.model = model_config_from_json(*m);
    if (auto* t = r.child("train")) c.train = train_config_from_json(*t);
    if (auto* d = r.child("data")) c.data = data_config_from_json(*d);
    return c;
}

} // namespace crucible
