#include "core/bench/bench_model.h"

#include "core/model/model_config.h"

#include <algorithm>
#include <filesystem>

namespace crucible {

BenchModel random_bench_model(const std::string& preset_name, int context, int vocab, Backend* shared,
                              const BackendOptions& options, uint64_t seed)
{
    BenchModel m;
    m.name = preset_name;
    ModelConfig c = preset(preset_name);
    c.seq_len = std::max(c.seq_len, context);
    if (vocab > 0) c.vocab_size = vocab;
    if (!shared) m.backend = make_backend(options);
    m.params = std::make_unique<ParamStore>(shared ? *shared : *m.backend, c, false);
    m.params->initialize(seed);
    return m;
}

BenchModel trained_bench_model(const std::string& path, const BackendOptions& options)
{
    BenchModel m;
    m.loaded = std::make_unique<LoadedModel>(load_model(path, options));
    m.name = std::filesystem::path(path).filename().string();
    if (m.name.empty()) m.name = path;
    return m;
}

} // namespace crucible
