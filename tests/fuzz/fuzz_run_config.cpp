// A run's config.json and a --config file (a run or a model configuration),
// read and validated as `train` does.
#include "core/train/run_config.h"
#include "tests/fuzz/fuzz_input.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace crucible;
    const auto j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded()) return 0;
    CRUCIBLE_FUZZ_REFUSALS_OK({
        const RunConfig c = run_config_from_json(j);
        c.validate();
        (void)to_json(c).dump();
    });
    CRUCIBLE_FUZZ_REFUSALS_OK(model_config_from_json(j).validate());
    return 0;
}
