#include "core/io/hf_export.h"

#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "core/model/param_layout.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <algorithm>
#include <cstring>

namespace fs = std::filesystem;
using nlohmann::json;

namespace crucible {

namespace {

// What LlamaTokenizer needs to encode exactly as Crucible does: the
// SentencePiece model used as it is ("legacy"), no prefix space of its own,
// and BOS only where the model was trained with it (ours: never).
json default_tokenizer_config(const Tokenizer& tokenizer, const ModelConfig& config)
{
    return {
        {"tokenizer_class", "LlamaTokenizer"},
        {"legacy", true},
        {"add_prefix_space", false},
        {"add_bos_token", false},
        {"add_eos_token", false},
        {"bos_token", tokenizer.piece(tokenizer.bos_id())},
        {"eos_token", tokenizer.piece(tokenizer.eos_id())},
        {"unk_token", tokenizer.piece(tokenizer.unk_id())},
        {"pad_token", nullptr},
        {"clean_up_tokenization_spaces", false},
        {"spaces_between_special_tokens", false},
        {"model_max_length", config.seq_len},
        {"sp_model_kwargs", json::object()},
    };
}

} // namespace

std::string parse_hf_dtype(const std::string& name)
{
    std::string upper = name;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    if (upper == "F32" || upper == "BF16" || upper == "F16") return upper;
    throw Error("unknown Hugging Face dtype \"" + name + "\"; choose f32, bf16 or f16");
}

void export_hf(const ModelConfig& config, const Tokenizer& tokenizer, const std::vector<float>& weights,
               const HfExportOptions& options, const fs::path& out_dir)
{
    const std::string dtype = parse_hf_dtype(options.dtype);
    const ParamLayout layout(config);
    CRUCIBLE_CHECK(int64_t(weights.size()) == layout.total(), "HF export: weights do not match the layout");
    std::error_code ec;
    if (fs::exists(out_dir, ec) && !(fs::is_directory(out_dir, ec) && fs::is_empty(out_dir, ec)))
        throw Error(out_dir.string() + " already exists and is not empty; choose another folder for the export");
    AtomicDirectory out(out_dir);

    SafetensorsWriter model;
    model.set_metadata("format", "pt");
    for (const ParamEntry& e : layout.entries()) {
        const float* src = weights.data() + e.offset;
        if (dtype == "F32") {
            model.add_f32(e.name, e.dims(), src);
            continue;
        }
        std::vector<uint16_t> half(size_t(e.numel()));
        for (size_t i = 0; i < half.size(); ++i) half[i] = dtype == "BF16" ? bf16_from_f32(src[i]) : f16_from_f32(src[i]);
        model.add(e.name, dtype, e.dims(), half.data(), half.size() * 2);
    }
    model.write(out.staging() / "model.safetensors");

    json hf = to_hf_config(config, tokenizer.bos_id(), tokenizer.eos_id());
    hf["torch_dtype"] = dtype == "F32" ? "float32" : dtype == "BF16" ? "bfloat16" : "float16";
    write_file_atomic(out.staging() / "config.json", hf.dump(2) + "\n");
    write_file_atomic(out.staging() / "generation_config.json",
                      json{{"bos_token_id", tokenizer.bos_id()}, {"eos_token_id", tokenizer.eos_id()}}.dump(2) + "\n");
    tokenizer.save(out.staging() / "tokenizer.model");
    const json tc = options.tokenizer_config ? *options.tokenizer_config : default_tokenizer_config(tokenizer, config);
    write_file_atomic(out.staging() / "tokenizer_config.json", tc.dump(2) + "\n");
    out.commit();
}

} // namespace crucible
