// A model to benchmark generation on: a trained one (a run, checkpoint or
// model folder) or a preset with random weights, whose context is extended
// to what the benchmark needs (speed does not depend on what a model learnt).
#pragma once

#include "core/model/param_store.h"
#include "core/train/load_model.h"
#include "kernels/backend_factory.h"

#include <memory>
#include <string>

namespace crucible {

struct BenchModel {
    std::string name;
    std::unique_ptr<LoadedModel> loaded;   // trained
    std::unique_ptr<Backend> backend;      // random, on a backend of its own
    std::unique_ptr<ParamStore> params;    // random
    ParamStore& store() { return loaded ? *loaded->params : *params; }
    bool trained() const { return loaded != nullptr; }
};

// A preset with random weights (seeded), its context at least `context`;
// vocab > 0 replaces the preset's (a random draft takes its target's). On
// `shared` when given (a draft beside its target), else on a new backend.
BenchModel random_bench_model(const std::string& preset_name, int context, int vocab, Backend* shared,
                              const BackendOptions& options, uint64_t seed);
// A trained model, named after its folder.
BenchModel trained_bench_model(const std::string& path, const BackendOptions& options);

} // namespace crucible
