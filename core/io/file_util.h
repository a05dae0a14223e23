// Reading and atomically writing files. Every file the engine writes goes to a
// temporary name in the same folder, is flushed to disk, then renamed over the
// target: a crash leaves either the old file or the new one, never half.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace crucible {

// Throws Error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);
// Throws Error naming the path when it cannot be written; the target is
// untouched on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// A directory written under a temporary name and renamed into place on
// commit(); removed if it goes out of scope uncommitted.
class AtomicDirectory {
public:
    explicit AtomicDirectory(std::filesystem::path target);
    ~AtomicDirectory();
    AtomicDirectory(const AtomicDirectory&) = delete;
    AtomicDirectory& operator=(const AtomicDirectory&) = delete;

    const std::filesystem::path& staging() const { return m_staging; }
    // Renames staging over target (replacing an existing target directory).
    void commit();

private:
    std::filesystem::path m_target, m_staging;
    bool m_committed = false;
};

// 64-bit FNV-1a of bytes, as 16 hex digits (cache keys, not security).
std::string hash_hex(std::string_view bytes);

} // namespace crucible
