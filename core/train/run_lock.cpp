#include "core/train/run_lock.h"

#include "kernels/error.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <thread>
#include <sys/file.h>
#include <unistd.h>
#include <utility>

namespace crucible {

RunLock::RunLock(const std::filesystem::path& root)
{
    const std::filesystem::path file = root / kFileName;
    m_fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m_fd < 0)
        throw Error("cannot write in " + root.string() + ": " + std::strerror(errno) +
                    "; choose a folder you can write to");
    // held_by_anyone() probes with a shared lock for a moment; a few retries
    // ride over such a probe instead of calling it another trainer.
    int rc = -1, err = 0;
    for (int attempt = 0; attempt < 20; ++attempt) {
        rc = ::flock(m_fd, LOCK_EX | LOCK_NB);
        err = errno;
        if (rc == 0 || err != EWOULDBLOCK) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (rc != 0) {
        ::close(m_fd);
        m_fd = -1;
        if (err == EWOULDBLOCK)
            throw Error("another process is training the run in " + root.string() +
                        "; wait for it to finish or stop it before resuming");
        throw Error("cannot lock " + file.string() + ": " + std::strerror(err));
    }
}

bool RunLock::held_by_anyone(const std::filesystem::path& root)
{
    const int fd = ::open((root / kFileName).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;   // never locked: no trainer ever started here
    // A new open file description conflicts with every other one, this
    // process's own trainer included, so a busy lock means a live trainer.
    const bool busy = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);   // releases the shared lock if it was taken
    return busy;
}

RunLock::~RunLock()
{
    if (m_fd >= 0) ::close(m_fd);   // closing the descriptor releases the lock
}

RunLock::RunLock(RunLock&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}

RunLock& RunLock::operator=(RunLock&& other) noexcept
{
    if (this != &other) {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
}

} // namespace crucible
