// A Hugging Face config.json, as a model folder brings it.
#include "core/io/hf_config.h"
#include "tests/fuzz/fuzz_input.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const auto j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded()) return 0;
    CRUCIBLE_FUZZ_REFUSALS_OK(crucible::from_hf_config(j).validate());
    return 0;
}
