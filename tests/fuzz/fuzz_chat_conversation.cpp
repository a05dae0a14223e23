// A run's chat.json, the conversation the Chat page saves after every reply
// and reads back when the run is opened again.
#include "tests/fuzz/fuzz_input.h"
#include "ui/pages/chat_conversation.h"

#include <QCoreApplication>

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const auto file = crucible::fuzz::write_input("chat.json", data, size);
    QString error;
    const auto c = crucible::ui::ChatConversation::load(QString::fromStdString(file.string()), &error);
    if (!error.isEmpty()) return 0;
    // What loads must survive its own round trip and render as a transcript.
    QString again;
    const auto d = crucible::ui::ChatConversation::fromJson(c.toJson(), &again);
    if (!again.isEmpty() || d.turns.size() != c.turns.size() || d.plainText() != c.plainText()) std::abort();
    (void)c.history(int(c.turns.size()));
    return 0;
}
