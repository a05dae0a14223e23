// The few facts about a SentencePiece model that its public C++ API does not
// expose, read from and written into the serialized ModelProto directly.
//
// ModelProto (sentencepiece_model.proto) keeps its normalisation settings in
// field 3, NormalizerSpec, whose field 3 is add_dummy_prefix (proto2 default:
// true). Protocol buffers merge repeated occurrences of an embedded message
// and let the last scalar win, so appending one small NormalizerSpec changes
// that flag without re-encoding (or even understanding) the rest of the model.
#pragma once

#include <string>
#include <string_view>

namespace crucible::sentencepiece_proto {

// add_dummy_prefix as SentencePiece will read it. Throws Error on bytes that
// are not a well-formed protocol buffer.
bool adds_dummy_prefix(std::string_view model_proto);

// The same model with add_dummy_prefix set to `on`.
std::string with_dummy_prefix(std::string_view model_proto, bool on);

} // namespace crucible::sentencepiece_proto
