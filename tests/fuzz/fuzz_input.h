// What the fuzz harnesses share: the input as a string or as a file (the
// parsers that take a path read a real file, as they do for a user), and the
// rule that a parser may refuse input only with crucible::Error.
#pragma once

#include "kernels/error.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace crucible::fuzz {

inline std::string as_string(const uint8_t* data, size_t size)
{
    return std::string(reinterpret_cast<const char*>(data), size);
}

// A per-process scratch folder (in /dev/shm when there is one) holding the
// input under `name`; rewritten for every input.
std::filesystem::path scratch_dir();
std::filesystem::path write_input(const std::string& name, const uint8_t* data, size_t size);

} // namespace crucible::fuzz

// Runs `body`; an Error is a refusal, the expected outcome for most inputs.
// Anything else (another exception, a crash, a sanitizer report) is a finding.
#define CRUCIBLE_FUZZ_REFUSALS_OK(body)          \
    do {                                         \
        try {                                    \
            body;                                \
        } catch (const ::crucible::Error&) {     \
        }                                        \
    } while (0)
