// A PEFT adapter folder's adapter_config.json, read when a fine-tune or an
// adapter written by PEFT is opened, checked against the base it applies to.
#include "core/io/peft_adapter.h"
#include "core/model/model_config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static const crucible::ModelConfig base = crucible::preset("nano");
    const auto dir = crucible::fuzz::scratch_dir();
    crucible::fuzz::write_input("adapter_config.json", data, size);
    CRUCIBLE_FUZZ_REFUSALS_OK({
        const crucible::PeftAdapterInfo info = crucible::read_peft_config(dir, base);
        // What was accepted must describe adapters that can be made for the base.
        info.config.validate(base);
    });
    return 0;
}
