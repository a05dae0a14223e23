// Errors. The engine reports every failure as a crucible::Error whose message
// says what failed and, where we know it, what the user can do about it.
// Libraries never abort() or exit(): the GUI must survive a user's mistake.
#pragma once

#include <stdexcept>
#include <string>

namespace crucible {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

} // namespace crucible

// Internal invariant or argument check; the message is for the developer and
// the user alike, so write it as a sentence.
#define CRUCIBLE_CHECK(cond, message)                                          \
    do {                                                                       \
        if (!(cond)) ::crucible::throw_error(__FILE__, __LINE__, (message));   \
    } while (0)
