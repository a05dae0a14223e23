#include "tests/support/tiny_hf_model.h"

#include "core/data/sentencepiece_proto.h"
#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "core/model/param_store.h"
#include "core/util/paths.h"
#include "kernels/backend_factory.h"
#include "kernels/half.h"
#include "resources/embedded_resources.h"
#include "tests/support/test_support.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

namespace fs = std::filesystem;

namespace crucible::test {

const Tokenizer& tiny_tokenizer(bool space_prefix)
{
    static std::map<bool, std::unique_ptr<Tokenizer>> cache;
    auto& slot = cache[space_prefix];
    if (!slot) {
        const std::string_view all = *embedded_resource("tinyshakespeare.txt");
        TokenizerOptions o;
        o.vocab_size = 320;
        o.threads = 2;
        const Tokenizer plain = Tokenizer::train_cached(
            Corpus::from_documents({Document{"part.txt", std::string(all.substr(0, 60'000))}}), o,
            default_cache_dir() / "tokenizers");
        slot = std::make_unique<Tokenizer>(Tokenizer::from_serialized(
            sentencepiece_proto::with_dummy_prefix(plain.serialized(), space_prefix)));
    }
    return *slot;
}

ModelConfig tiny_model_config(const TinyHfModel& spec)
{
    ModelConfig c;
    c.name = spec.qwen3 ? "tiny-qwen3" : "tiny-llama";
    c.vocab_size = tiny_tokenizer(spec.space_prefix).vocab_size();
    c.d_model = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = spec.qwen3 ? 32 : 0;   // Qwen3's heads are wider than d_model / heads
    c.ff_dim = 96;
    c.seq_len = spec.context;
    c.rope_theta = spec.qwen3 ? 1000000.0f : 10000.0f;
    c.norm_eps = 1e-6f;
    c.qk_norm = spec.qwen3;
    c.tied_embeddings = spec.tied;
    return c;
}

namespace {

// The tensor in the file's dtype, and its values read back as f32.
std::string encode(const float* v, size_t n, const std::string& dtype, float* stored)
{
    std::string bytes;
    if (dtype == "F32") {
        bytes.assign(reinterpret_cast<const char*>(v), n * sizeof(float));
        std::copy(v, v + n, stored);
        return bytes;
    }
    bytes.resize(2 * n);
    for (size_t i = 0; i < n; ++i) {
        const uint16_t h = dtype == "BF16" ? bf16_from_f32(v[i]) : f16_from_f32(v[i]);
        bytes[2 * i] = char(h & 0xff);
        bytes[2 * i + 1] = char(h >> 8);
        stored[i] = dtype == "BF16" ? f32_from_bf16(h) : f32_from_f16(h);
    }
    return bytes;
}

} // namespace

WrittenHfModel write_tiny_hf_model(const fs::path& dir, const TinyHfModel& spec)
{
    const ModelConfig config = tiny_model_config(spec);
    const Tokenizer& tokenizer = tiny_tokenizer(spec.space_prefix);
    auto backend = make_backend(BackendOptions{});
    ParamStore params(*backend, config, false);
    params.initialize(spec.seed);
    perturb_all(params, spec.seed + 1, 0.05f);
    const std::vector<float> weights = params.download_master();

    WrittenHfModel out;
    out.weights.assign(weights.size(), 0.0f);
    fs::create_directories(dir);
    std::vector<SafetensorsWriter> shards(size_t(std::max(spec.shards, 1)));
    nlohmann::json weight_map = nlohmann::json::object();
    auto shard_name = [&](size_t i) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        return shards.size() == 1 ? std::string("model.safetensors") : std::string(name);
    };
    const auto& entries = params.layout().entries();
    for (size_t i = 0; i < entries.size(); ++i) {
        const ParamEntry& e = entries[i];
        // Consecutive tensors share a shard, as save_pretrained fills them.
        const size_t shard = i * shards.size() / entries.size();
        const std::string bytes = encode(weights.data() + e.offset, size_t(e.numel()), spec.dtype,
                                         out.weights.data() + e.offset);
        shards[shard].add(e.name, spec.dtype, e.dims(), bytes.data(), bytes.size());
        weight_map[e.name] = shard_name(shard);
    }
    for (size_t i = 0; i < shards.size(); ++i) {
        shards[i].set_metadata("format", "pt");
        shards[i].write(dir / shard_name(i));
    }
    if (shards.size() > 1)
        write_file_atomic(dir / "model.safetensors.index.json",
                          nlohmann::json{{"metadata", {{"total_size", weights.size() * 4}}},
                                         {"weight_map", weight_map}}.dump(2));

    // config.json as transformers writes it (no "crucible" key).
    out.config = to_hf_config(config, tokenizer.bos_id(), tokenizer.eos_id());
    out.config.erase("crucible");
    out.config["torch_dtype"] = spec.dtype == "F32" ? "float32" : spec.dtype == "BF16" ? "bfloat16" : "float16";
    out.config["transformers_version"] = "4.46.0";
    if (spec.qwen3) {
        out.config["use_sliding_window"] = false;
        out.config["sliding_window"] = nullptr;
    }
    write_file_atomic(dir / "config.json", out.config.dump(2));
    tokenizer.save(dir / "tokenizer.model");
    return out;
}

} // namespace crucible::test
