// The token cache: a corpus tokenized once is read back on the next run
// instead of being encoded again. One binary file per (corpus, tokenizer,
// format) triple, written atomically and checksummed, so a damaged or
// truncated file is detected and simply rebuilt.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crucible::token_cache {

using DocumentTokens = std::vector<std::vector<int32_t>>;

std::filesystem::path file_for(const std::filesystem::path& cache_dir, const std::string& corpus_fingerprint,
                               const std::string& tokenizer_fingerprint);

// The cached tokens, or nullopt when the file is missing, damaged, or does
// not fit the corpus (document count) and tokenizer (ids below vocab_size).
std::optional<DocumentTokens> read(const std::filesystem::path& file, size_t documents, int vocab_size);

// Throws Error when the file cannot be written.
void write(const std::filesystem::path& file, const DocumentTokens& tokens);

} // namespace crucible::token_cache
