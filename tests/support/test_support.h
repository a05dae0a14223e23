// Shared helpers for the test suites: seeded random tensors, relative error,
// temporary directories and the PyTorch reference runner.
#pragma once

#include "core/model/param_store.h"
#include "kernels/backend.h"

#include <QTemporaryDir>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace crucible::test {

std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f);

// The training suites' model: 2 layers of width 64, GQA 4/2 heads, a
// 320-token vocabulary, small enough that a step takes milliseconds.
ModelConfig tiny_model(int seq_len);
std::vector<int32_t> random_ids(size_t n, int32_t limit, uint64_t seed);

// Norm weights start at 1 and biases at 0: adds noise of this scale to every
// vector parameter so that they, and their gradients, are generic too.
void perturb_vectors(ParamStore& params, uint64_t seed, float scale);
// A freshly initialised model mostly repeats its input (small residual
// branches, tied embeddings), so its greedy text is one token over and over:
// adds noise of this scale to every parameter, matrices too, for a model
// whose greedy text varies.
void perturb_all(ParamStore& params, uint64_t seed, float scale);

// ‖a − b‖ / max(‖b‖, tiny): the relative error of a against reference b.
double relative_error(const std::vector<float>& a, const std::vector<double>& b);
double relative_error(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

// A tensor on the backend's device filled from host data (f32 host values).
struct OwnedTensor {
    Backend* backend = nullptr;
    void* ptr = nullptr;
    Tensor t;
    OwnedTensor() = default;
    OwnedTensor(Backend& be, DType dtype, Shape shape);
    OwnedTensor(Backend& be, DType dtype, Shape shape, const std::vector<float>& host);
    OwnedTensor(Backend& be, Shape shape, const std::vector<int32_t>& host);   // i32
    ~OwnedTensor();
    OwnedTensor(OwnedTensor&& o) noexcept;
    OwnedTensor& operator=(OwnedTensor&& o) noexcept;
    OwnedTensor(const OwnedTensor&) = delete;
    OwnedTensor& operator=(const OwnedTensor&) = delete;
    std::vector<float> to_host() const;
    operator Tensor() const { return t; }
};

std::filesystem::path source_dir();   // repository root
std::filesystem::path binary_dir();   // build directory
std::filesystem::path python3();      // the interpreter with torch (/usr/bin/python3)
bool python_has_torch();

// Runs a command, returns its exit code; stdout+stderr land in `output`.
int run_command(const std::string& command, std::string* output = nullptr);

} // namespace crucible::test
