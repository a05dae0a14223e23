// One trainer per run directory. Two processes resuming the same run would
// both write checkpoints and interleave their metrics; an advisory lock on
// <run>/.lock (flock) lets only the first proceed. The kernel drops the lock
// when its holder exits, however it exits, so a killed run never leaves a
// stale lock behind.
#pragma once

#include <filesystem>

namespace crucible {

class RunLock {
public:
    RunLock() = default;
    // Takes the lock of the run in `root` (which must exist); throws Error
    // saying that another process trains it when the lock is held.
    explicit RunLock(const std::filesystem::path& root);
    ~RunLock();
    RunLock(RunLock&& other) noexcept;
    RunLock& operator=(RunLock&& other) noexcept;
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

    bool held() const { return m_fd >= 0; }
    // Whether some process (this one included) holds the lock of the run in
    // `root` right now: a run with no end record is still training when it is
    // held, and was interrupted (killed, crashed, power lost) when it is not.
    static bool held_by_anyone(const std::filesystem::path& root);
    static constexpr const char* kFileName = ".lock";

private:
    int m_fd = -1;
};

} // namespace crucible
