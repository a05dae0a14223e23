// Reading and atomically writing files. Every file the engine writes goes to a
// temporary name in the same folder, is flushed to disk, then renamed over the
// target: a crash leaves either the old file or the new one, never half.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace crucible {

// Throws Error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);
// Throws Error naming the path when it cannot be written; the target is
// untouched on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// A file written piece by piece (a model larger than memory allows twice)
// under a temporary name in the same folder; commit() flushes it to disk and
// renames it over the target. Dropped uncommitted, nothing remains.
class AtomicFile {
public:
    explicit AtomicFile(std::filesystem::path target);   // throws Error
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void append(std::string_view bytes);   // throws Error (disk full, ...)
    uint64_t size() const { return m_size; }
    void commit();

private:
    std::filesystem::path m_target, m_staging;
    int m_fd = -1;
    uint64_t m_size = 0;
    bool m_committed = false;
};

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
