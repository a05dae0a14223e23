#include "core/io/file_util.h"

#include "kernels/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <unistd.h>

namespace fs = std::filesystem;

namespace crucible {

std::string read_file(const fs::path& path)
{
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error("file not found: " + path.string());
    if (fs::is_directory(path, ec)) throw Error("expected a file but found a folder: " + path.string());
    if (!fs::is_regular_file(path, ec))
        throw Error(path.string() + " is not a regular file (a pipe, socket or device); save it to a file and pass that");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
    return bytes;
}

namespace {

// "cannot write X: <reason>", with what to do when the reason is a full disk.
[[noreturn]] void throw_write_error(const fs::path& path, int err)
{
    std::string msg = "cannot write " + path.string() + ": " + std::strerror(err);
    if (err == ENOSPC || err == EDQUOT) msg += " (the disk is full: free some space or choose another folder)";
    throw Error(msg);
}

std::string unique_suffix()
{
    static thread_local std::mt19937_64 gen(std::random_device{}());
    char buf[32];
    std::snprintf(buf, sizeof buf, ".tmp-%d-%08llx", int(getpid()), (unsigned long long)(gen() & 0xffffffffu));
    return buf;
}

void fsync_path(const fs::path& path, bool directory)
{
    const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

} // namespace

AtomicFile::AtomicFile(fs::path target) : m_target(std::move(target))
{
    const fs::path dir = m_target.has_parent_path() ? m_target.parent_path() : fs::path(".");
    std::error_code ec;
    fs::create_directories(dir, ec);
    m_staging = dir / (m_target.filename().string() + unique_suffix());
    m_fd = ::open(m_staging.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (m_fd < 0) throw_write_error(m_target, errno);
}

AtomicFile::~AtomicFile()
{
    if (m_fd >= 0) ::close(m_fd);
    if (!m_committed) {
        std::error_code ec;
        fs::remove(m_staging, ec);
    }
}

void AtomicFile::append(std::string_view bytes)
{
    CRUCIBLE_CHECK(m_fd >= 0, "append to an atomic file after commit");
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(m_fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_write_error(m_target, errno);
        }
        done += size_t(n);
    }
    m_size += bytes.size();
}

void AtomicFile::commit()
{
    CRUCIBLE_CHECK(m_fd >= 0, "atomic file committed twice");
    const int fd = m_fd;
    m_fd = -1;
    if (::fsync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        throw_write_error(m_target, err);
    }
    if (::close(fd) != 0) throw_write_error(m_target, errno);
    std::error_code ec;
    fs::rename(m_staging, m_target, ec);
    if (ec) throw Error("cannot replace " + m_target.string() + ": " + ec.message());
    m_committed = true;
    fsync_path(m_target.has_parent_path() ? m_target.parent_path() : fs::path("."), true);
}

void write_file_atomic(const fs::path& path, std::string_view bytes)
{
    AtomicFile file(path);
    file.append(bytes);
    file.commit();
}

AtomicDirectory::AtomicDirectory(fs::path target) : m_target(std::move(target))
{
    const fs::path parent = m_target.has_parent_path() ? m_target.parent_path() : fs::path(".");
    std::error_code ec;
    fs::create_directories(parent, ec);
    m_staging = parent / (m_target.filename().string() + unique_suffix());
    fs::create_directories(m_staging, ec);
    if (ec) throw Error("cannot create " + m_staging.string() + ": " + ec.message());
}

AtomicDirectory::~AtomicDirectory()
{
    if (!m_committed) {
        std::error_code ec;
        fs::remove_all(m_staging, ec);
    }
}

void AtomicDirectory::commit()
{
    std::error_code ec;
    // A directory cannot be renamed over a non-empty one: move the old one
    // aside first, then drop it once the new one is in place.
    fs::path old;
    if (fs::exists(m_target, ec)) {
        old = m_target.parent_path() / (m_target.filename().string() + unique_suffix() + ".old");
        fs::rename(m_target, old, ec);
        if (ec) throw Error("cannot replace " + m_target.string() + ": " + ec.message());
    }
    fs::rename(m_staging, m_target, ec);
    if (ec) {
        if (!old.empty()) fs::rename(old, m_target, ec);
        throw Error("cannot write " + m_target.string() + ": " + ec.message());
    }
    m_committed = true;
    if (!old.empty()) fs::remove_all(old, ec);
    fsync_path(m_target.parent_path().empty() ? fs::path(".") : m_target.parent_path(), true);
}

std::string hash_hex(std::string_view bytes)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
    return buf;
}

} // namespace crucible
