// crucible-cli as a child process the tests can signal: started without a
// shell (so that a signal reaches crucible-cli itself), its output in a file.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/types.h>

namespace crucible::test {

std::filesystem::path cli_path();   // the built crucible-cli

class CliProcess {
public:
    // Starts crucible-cli with `args`; stdout and stderr go to `log`.
    CliProcess(const std::vector<std::string>& args, const std::filesystem::path& log);
    ~CliProcess();   // kills and reaps a child still running
    CliProcess(const CliProcess&) = delete;
    CliProcess& operator=(const CliProcess&) = delete;

    pid_t pid() const { return m_pid; }
    void signal(int sig) const;
    // The exit code, 128 + the signal for a child killed by one, or -1 when
    // it was still running after `timeout` (it is then killed).
    int wait(std::chrono::milliseconds timeout = std::chrono::minutes(5));
    bool running();

private:
    pid_t m_pid = -1;
    int m_status = 0;
    bool m_reaped = false;
};

// Splits "a b 'c d'" the way a shell would for simple quoting (single quotes only).
std::vector<std::string> split_args(const std::string& line);

} // namespace crucible::test
