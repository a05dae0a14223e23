// Errors. The engine reports every failure as a crucible::Error whose message
// says what failed and, where we know it, what the user can do about it.
// Libraries never abort() or exit(): the GUI must survive a user's mistake.
#pragma once

#include <stdexcept>
#include <string>

namespace crucible {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, std::string where = {})
        : std::runtime_error(message), m_where(std::move(where)) {}
    // "file.cpp:123" for a failed internal check, empty otherwise. Kept out
    // of what(): a user is told what failed, a developer can ask where.
    const std::string& where() const { return m_where; }

private:
    std::string m_where;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

} // namespace crucible

// Internal invariant check; the message is for the developer and the user
// alike, so write it as a sentence. The source location goes to where().
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
