// A checkpoint's trainer_state.json, read when a run resumes.
#include "core/train/checkpoint.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const auto dir = crucible::fuzz::scratch_dir();
    crucible::fuzz::write_input("trainer_state.json", data, size);
    CRUCIBLE_FUZZ_REFUSALS_OK(crucible::load_trainer_state(dir));
    return 0;
}
