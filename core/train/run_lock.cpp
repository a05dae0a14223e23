#include "core/train/run_lock.h"

#include "kernels/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
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
    if (::flock(m_fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(m_fd);
        m_fd = -1;
        if (err == EWOULDBLOCK)
            throw Error("another process is training the run in " + root.string() +
                        "; wait for it to finish or stop it before resuming");
        throw Error("cannot lock " + file.string() + ": " + std::strerror(err));
    }
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
