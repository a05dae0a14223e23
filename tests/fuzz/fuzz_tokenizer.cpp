// A tokenizer.model (SentencePiece ModelProto): our reader of its normaliser
// flag, then SentencePiece itself behind our wrapper, encoding and decoding.
#include "core/data/sentencepiece_proto.h"
#include "core/data/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace crucible;
    const std::string bytes = fuzz::as_string(data, size);
    CRUCIBLE_FUZZ_REFUSALS_OK((void)sentencepiece_proto::adds_dummy_prefix(bytes));
    CRUCIBLE_FUZZ_REFUSALS_OK({
        const Tokenizer t = Tokenizer::from_serialized(bytes);
        const auto ids = t.encode("To be, or not to be: \xc3\xa9t\xc3\xa9 \xe2\x9c\x93\n");
        (void)t.decode(ids);
    });
    return 0;
}
