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

// Internal invariant check; the message is for the developer and the user
// alike, so write it as a sentence. It ends with the source location.
#define CRUCIBLE_CHECK(cond, message)                                          \
    do {                                                                       \
        if (!(cond)) ::crucible::throw_error(__FILE__, __LINE__, (message));   \
    } while (0)

// Check of what a caller passed (an op's arguments, the data they hold): the
// message says what is wrong in the caller's terms, without a source location.
#define CRUCIBLE_REQUIRE(cond, message)                                        \
    do {                                                                       \
        if (!(cond)) throw ::crucible::Error(message);                         \
    } while (0)
