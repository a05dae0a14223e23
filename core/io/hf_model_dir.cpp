// Opening a Hugging Face model directory: every check before any weight is
// read, so a directory that cannot become a Crucible model costs only its
// headers and ends in one message that says which file and what is wrong.
#include "core/io/hf_model_dir.h"

#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "core/model/param_layout.h"
#include "core/model/param_store.h"
#include "kernels/error.h"

#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace crucible {

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
const std::set<std::string> kArchitectures = {"LlamaForCausalLM", "Qwen3ForCausalLM"};

[[noreturn]] void refuse(const fs::path& dir, const std::string& problem)
{
    throw Error(dir.string() + ": " + problem);
}

std::string shape_string(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

json read_json(const fs::path& file)
{
    auto j = json::parse(read_file(file), nullptr, false);
    if (j.is_discarded()) throw Error(file.string() + " is not valid JSON; the download is incomplete or corrupt");
    return j;
}

// Which of the two families the configuration names, refusing every other.
std::string architecture_of(const fs::path& dir, const json& config)
{
    if (!config.is_object()) refuse(dir, "config.json does not hold a JSON object");
    const auto it = config.find("architectures");
    if (it == config.end() || it->is_null()) {
        // Older files name only the model_type; from_hf_config checks it.
        const auto type = config.find("model_type");
        const bool qwen3 = type != config.end() && type->is_string() && *type == "qwen3";
        return qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
    }
    if (it->is_array())
        for (const auto& a : *it)
            if (a.is_string() && kArchitectures.count(a.get<std::string>())) return a.get<std::string>();
    refuse(dir, "config.json names the architecture " + it->dump() +
                    "; Crucible imports LlamaForCausalLM and Qwen3ForCausalLM models (LLaMA, TinyLlama, "
                    "Qwen3 and their fine-tunes)");
}

// Tensors a file may hold that the model does not use: RoPE's inverse
// frequencies (recomputed from rope_theta) in older LLaMA exports, and a
// copy of the embedding as lm_head in some tied checkpoints.
bool ignorable(const std::string& name, const ModelConfig& config)
{
    const std::string_view suffix = "rotary_emb.inv_freq";
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    return config.tied_embeddings && name == "lm_head.weight";
}

// The safetensors files of the directory: the single file, or the shards the
// index names (plain file names inside the directory, nothing else).
std::vector<fs::path> weight_files_of(const fs::path& dir, std::map<std::string, fs::path>* index_map)
{
    std::error_code ec;
    if (fs::is_regular_file(dir / kSingleFile, ec)) return {dir / kSingleFile};
    if (!fs::is_regular_file(dir / kIndexFile, ec)) {
        if (fs::exists(dir / "pytorch_model.bin", ec) || fs::exists(dir / "pytorch_model.bin.index.json", ec))
            refuse(dir, "the weights are in PyTorch's pickle format (pytorch_model.bin); Crucible reads safetensors "
                        "only — download the model's safetensors files, or convert them with transformers "
                        "(save_pretrained(..., safe_serialization=True))");
        refuse(dir, std::string("has neither ") + kSingleFile + " nor " + kIndexFile +
                        "; it is not a Hugging Face model folder, or its download is incomplete");
    }
    const fs::path index_file = dir / kIndexFile;
    const json index = read_json(index_file);
    const auto map = index.is_object() ? index.find("weight_map") : index.end();
    if (map == index.end() || !map->is_object() || map->empty())
        throw Error(index_file.string() + " has no \"weight_map\" of tensor names to files; the file is corrupt");
    std::set<std::string> names;
    for (const auto& [tensor, file] : map->items()) {
        if (!file.is_string())
            throw Error(index_file.string() + " maps \"" + tensor + "\" to " + file.dump() + ", not a file name");
        const std::string name = file.get<std::string>();
        if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
            name == "." || name == "..")
            throw Error(index_file.string() + " names the shard \"" + name +
                        "\"; shards must be plain file names inside the model folder");
        (*index_map)[tensor] = dir / name;
        names.insert(name);
    }
    std::vector<fs::path> files;
    for (const auto& name : names) {
        if (!fs::is_regular_file(dir / name, ec))
            refuse(dir, "the shard " + name + " named by " + kIndexFile +
                            " is missing; the download is incomplete — fetch every model-*.safetensors file");
        files.push_back(dir / name);
    }
    return files;
}

} // namespace

Tokenizer HfModelDir::load_tokenizer() const
{
    return Tokenizer::load(tokenizer_file);
}

bool is_hf_model_dir(const fs::path& dir)
{
    std::error_code ec;
    return fs::is_regular_file(dir / "config.json", ec) &&
           (fs::is_regular_file(dir / kSingleFile, ec) || fs::is_regular_file(dir / kIndexFile, ec));
}

HfModelDir open_hf_model_dir(const fs::path& dir)
{
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw Error("not found: " + dir.string());
    if (!fs::is_directory(dir, ec))
        throw Error(dir.string() + " is a file; pass the Hugging Face model folder that holds config.json");
    if (!fs::is_regular_file(dir / "config.json", ec))
        refuse(dir, "has no config.json; pass the folder a Hugging Face model was downloaded or saved into");

    HfModelDir m;
    m.dir = dir;
    const json config = read_json(dir / "config.json");
    m.architecture = architecture_of(dir, config);
    if (const auto sliding = config.find("use_sliding_window"); sliding != config.end() && *sliding == true)
        refuse(dir, "config.json asks for sliding-window attention (use_sliding_window); Crucible attends to the "
                    "whole context — set it to false only if the model was trained without it");
    try {
        m.config = from_hf_config(config);
    } catch (const Error& e) {
        refuse(dir, e.what());
    }
    if (m.architecture == "Qwen3ForCausalLM" && !m.config.qk_norm)
        refuse(dir, "config.json names Qwen3ForCausalLM but a model_type other than \"qwen3\"");

    // Tokenizer: SentencePiece only.
    m.tokenizer_file = dir / "tokenizer.model";
    if (!fs::is_regular_file(m.tokenizer_file, ec)) {
        if (fs::exists(dir / "tokenizer.json", ec))
            refuse(dir, "has only tokenizer.json (a Hugging Face \"fast\" tokenizer, byte-level BPE as in Qwen and "
                        "LLaMA 3); Crucible reads SentencePiece tokenizers — choose a model that ships "
                        "tokenizer.model (LLaMA 2, TinyLlama, Mistral 7B v0.1)");
        refuse(dir, "has no tokenizer.model (SentencePiece); the model cannot be used without its tokenizer");
    }
    const Tokenizer tokenizer = m.load_tokenizer();
    if (tokenizer.vocab_size() != m.config.vocab_size)
        refuse(dir, "tokenizer.model has " + std::to_string(tokenizer.vocab_size()) +
                        " tokens but config.json's vocab_size is " + std::to_string(m.config.vocab_size) +
                        " (tokens added in tokenizer.json or added_tokens.json are not supported)");
    if (fs::is_regular_file(dir / "tokenizer_config.json", ec)) {
        json tc = read_json(dir / "tokenizer_config.json");
        if (!tc.is_object()) refuse(dir, "tokenizer_config.json does not hold a JSON object");
        m.tokenizer_config = std::move(tc);
    }

    // Weights: every header read and checked against the model's layout.
    std::map<std::string, fs::path> index_map;
    m.weight_files = weight_files_of(dir, &index_map);
    std::map<std::string, SafetensorsEntry> entries;
    for (const fs::path& file : m.weight_files) {
        const SafetensorsReader header(file, SafetensorsReader::Contents::header_only);
        for (const SafetensorsEntry& e : header.entries()) {
            if (auto it = m.tensor_files.find(e.name); it != m.tensor_files.end())
                refuse(dir, "the tensor " + e.name + " is stored twice, in " + it->second.filename().string() +
                                " and " + file.filename().string());
            if (!index_map.empty()) {
                const auto listed = index_map.find(e.name);
                if (listed == index_map.end() || listed->second != file)
                    refuse(dir, file.filename().string() + " holds " + e.name + ", which " + kIndexFile +
                                    " places elsewhere; the index and the shards do not belong together");
            }
            m.tensor_files[e.name] = file;
            entries[e.name] = e;
        }
    }
    for (const auto& [name, file] : index_map)
        if (!m.tensor_files.count(name))
            refuse(dir, std::string(kIndexFile) + " places " + name + " in " + file.filename().string() +
                            ", which does not hold it; the shard is corrupt or from another model");

    const ParamLayout layout(m.config);
    std::set<std::string> used;
    for (const ParamEntry& p : layout.entries()) {
        const auto it = entries.find(p.name);
        if (it == entries.end())
            refuse(dir, "the weights have no tensor " + p.name + ", which a " + m.architecture + " with this "
                        "config.json needs" + (p.role == ParamRole::lm_head
                                                   ? " (config.json says the head is not tied to the embedding)"
                                                   : "") + "; the files are incomplete or belong to another model");
        const SafetensorsEntry& e = it->second;
        if (e.shape != p.dims())
            refuse(dir, "the tensor " + p.name + " in " + m.tensor_files[p.name].filename().string() +
                            " has shape " + shape_string(e.shape) + " but config.json describes " +
                            shape_string(p.dims()) + "; the weights and config.json do not belong together");
        if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16")
            refuse(dir, "the tensor " + p.name + " is stored as " + e.dtype +
                            "; Crucible imports F32, BF16 or F16 weights (quantized checkpoints are not supported)");
        m.weight_dtype = m.weight_dtype.empty() || m.weight_dtype == e.dtype ? e.dtype : "mixed";
        m.weight_bytes += e.end - e.begin;
        used.insert(p.name);
    }
    for (const auto& [name, file] : m.tensor_files)
        if (!used.count(name) && !ignorable(name, m.config))
            refuse(dir, file.filename().string() + " holds the tensor " + name + ", which a " + m.architecture +
                            " as Crucible builds it has no place for (biases, adapters or other extra weights are "
                            "not supported)");
    // Only the files the model reads, in order.
    std::vector<fs::path> needed;
    for (const fs::path& file : m.weight_files)
        for (const auto& name : used)
            if (m.tensor_files[name] == file) {
                needed.push_back(file);
                break;
            }
    m.weight_files = needed;
    for (auto it = m.tensor_files.begin(); it != m.tensor_files.end();)
        it = used.count(it->first) ? std::next(it) : m.tensor_files.erase(it);
    return m;
}

std::vector<float> read_hf_weights(const HfModelDir& model, const ParamLayout& layout)
{
    std::vector<float> host(size_t(layout.total()), 0.0f);
    for (const fs::path& file : model.weight_files) {
        const SafetensorsReader reader(file);   // one shard in memory at a time
        for (const ParamEntry& p : layout.entries()) {
            const auto it = model.tensor_files.find(p.name);
            if (it == model.tensor_files.end())
                throw Error(model.dir.string() + ": no file holds the tensor " + p.name +
                            "; open the folder again for the model it now holds");
            if (it->second == file) reader.read_f32(p.name, p.dims(), host.data() + p.offset);
        }
    }
    return host;
}

void load_hf_weights(const HfModelDir& model, ParamStore& params)
{
    params.upload_master(read_hf_weights(model, params.layout()));
}

} // namespace crucible
