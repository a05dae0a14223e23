// safetensors: header length, JSON, dtypes, shapes, byte ranges, checksums,
// then every tensor converted to f32 as a model load would.
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace crucible;
    const auto file = fuzz::write_input("model.safetensors", data, size);
    CRUCIBLE_FUZZ_REFUSALS_OK({
        SafetensorsReader reader(file);
        for (const SafetensorsEntry& e : reader.entries()) {
            if (e.numel() > (1 << 22)) continue;   // bounded by the file size already; keep runs fast
            std::vector<float> out(size_t(e.numel()));
            CRUCIBLE_FUZZ_REFUSALS_OK(reader.read_f32(e.name, e.shape, out.data()));
        }
    });
    CRUCIBLE_FUZZ_REFUSALS_OK(SafetensorsReader(file, SafetensorsReader::Contents::header_only));
    return 0;
}
