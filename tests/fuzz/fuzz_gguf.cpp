// The GGUF reader the export tests use to validate what we write.
#include "core/io/gguf.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    CRUCIBLE_FUZZ_REFUSALS_OK(crucible::gguf::File::parse(crucible::fuzz::as_string(data, size)));
    return 0;
}
