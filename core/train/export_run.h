// Exporting a run (or checkpoint, or model folder) for other tools: the one
// function behind `crucible-cli export` and the Runs page's Export.
#pragma once

#include <filesystem>
#include <string>

namespace crucible {

struct ExportRequest {
    std::string format;     // "gguf" (llama.cpp) or "hf" (transformers)
    std::string type;       // gguf: f32, f16, bf16, q8_0; hf: f32, bf16, f16; empty: f16 / f32
    std::filesystem::path out;
    // A fine-tune exports as its adapter (gguf: a llama.cpp LoRA adapter);
    // merged, as one model with the adapter added to the base.
    bool merged = false;
};

struct ExportResult {
    std::string description;   // one line for the user: what was written
    bool adapter = false;      // a LoRA adapter, applied over the base's own export
};

// Loads the model on the CPU and writes it; throws Error with what to change.
// A fine-tune run (or one of its checkpoints, or a PEFT folder) to gguf
// writes the adapter alone unless `merged`; to hf, the merged model.
ExportResult export_run(const std::filesystem::path& run, const ExportRequest& request);

} // namespace crucible
