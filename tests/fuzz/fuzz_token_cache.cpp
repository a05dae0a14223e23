// A token cache file: a damaged one must read as "absent" (nullopt), never
// crash or yield ids outside the vocabulary.
#include "core/data/token_cache.h"
#include "tests/fuzz/fuzz_input.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace crucible;
    const auto file = fuzz::write_input("tokens.bin", data, size);
    for (const size_t documents : {size_t(1), size_t(3)}) {
        const auto tokens = token_cache::read(file, documents, 320);
        if (!tokens) continue;
        if (tokens->size() != documents) std::abort();
        for (const auto& doc : *tokens)
            for (int32_t id : doc)
                if (id < 0 || id >= 320) std::abort();
    }
    return 0;
}
