// Where a chat reply of a plain-text model ends: the speaker-line rule of
// TextStream (it stops at "\nJULIET:" and never shows a speaker line, however
// the tokens split it, while ordinary lines and a colon in prose pass), and
// ChatStopRules turning the rules into a request (blank line, speaker, user
// prefix, a reply length that always fits the context; none of the plain-text
// rules for a chat model with its own template).
#include "core/generate/chat_stop_rules.h"
#include "core/generate/text_stream.h"
#include "tests/support/tiny_hf_model.h"

#include <QtTest>

#include <nlohmann/json.hpp>

using namespace crucible;

namespace {

struct Streamed {
    std::string shown;     // what release() handed out, in order
    bool stopped = false;
    std::string whole;     // the stream's text at the end
};

// Feeds `pieces` as tokens, releasing after each as the generator does.
Streamed stream(const std::vector<std::string>& pieces, std::vector<std::string> stops = {}, bool speakers = true)
{
    TextStream s(std::move(stops), speakers);
    Streamed out;
    for (const std::string& p : pieces) {
        out.stopped = s.append(p);
        out.shown += s.release(out.stopped);
        if (out.stopped) break;
    }
    if (!out.stopped) out.shown += s.release(true);
    out.whole = s.text();
    return out;
}

// Every way of cutting `text` into two tokens, and one byte at a time.
std::vector<std::vector<std::string>> splits(const std::string& text)
{
    std::vector<std::vector<std::string>> all;
    for (size_t i = 1; i < text.size(); ++i) all.push_back({text.substr(0, i), text.substr(i)});
    std::vector<std::string> bytes;
    for (char c : text) bytes.emplace_back(1, c);
    all.push_back(bytes);
    return all;
}

} // namespace

class TestChatStopRules : public QObject {
    Q_OBJECT

private slots:
    void speakerLinesAreRecognised()
    {
        for (const char* yes : {"JULIET:", "First Citizen:", "KING RICHARD III:", "Bob: hi", "O'Brien:", "Mr. Smith:"})
            QVERIFY2(is_speaker_line(yes), yes);
        for (const char* no : {"the end: of it", "The answer is: yes", "Well, sir: no", ":", " JULIET:", "JULIET",
                               "A Very Long Name Indeed:", "NAMEWITHOUTANYSPACESTHATISFARTOOLONG:", "Ünïcode:"})
            QVERIFY2(!is_speaker_line(no), no);
        bool could = false;
        is_speaker_line("First Cit", &could);
        QVERIFY(could);
        is_speaker_line("First cit,", &could);
        QVERIFY(!could);
        is_speaker_line("", &could);
        QVERIFY(could);
    }

    void streamStopsBeforeASpeakerLineHoweverItIsSplit()
    {
        const std::string text = "I will not, sir.\nJULIET:\nO Romeo";
        for (const auto& pieces : splits(text)) {
            const Streamed s = stream(pieces);
            QVERIFY(s.stopped);
            QCOMPARE(s.shown, std::string("I will not, sir."));
            QCOMPARE(s.whole, s.shown);
        }
    }

    void ordinaryLinesPass()
    {
        const std::string text = "Thus with a kiss I die.\nAnd so: farewell\nGood night";
        for (const auto& pieces : splits(text)) {
            const Streamed s = stream(pieces);
            QVERIFY(!s.stopped);
            QCOMPARE(s.shown, text);
        }
        // Off, a speaker line is just text.
        const Streamed off = stream({"Hi.\nJULIET: there"}, {}, false);
        QVERIFY(!off.stopped);
        QCOMPARE(off.shown, std::string("Hi.\nJULIET: there"));
    }

    void aHeldLineIsReleasedWhenItCannotBeASpeaker()
    {
        TextStream s({}, true);
        s.append("Yes.\nROMEO");
        QCOMPARE(s.release(false), std::string("Yes."));   // "\nROMEO" may still become "ROMEO:"
        s.append(" And");
        QCOMPARE(s.release(false), std::string());        // "ROMEO And" may be "ROMEO And JULIET:"
        s.append(" Juliet, both.");
        QCOMPARE(s.release(false), std::string("\nROMEO And Juliet, both."));
    }

    void blankLineAndSpeakerTogether()
    {
        const Streamed s = stream({"Good night", ".\n", "\nROMEO:"}, {"\n\n"});
        QVERIFY(s.stopped);
        QCOMPARE(s.shown, std::string("Good night."));
    }

    void rulesBecomeARequest()
    {
        const Tokenizer& tok = test::tiny_tokenizer(true);
        ChatTranscript plain(tok, ChatFormat{});
        ChatStopRules rules;
        GenerationRequest r;
        rules.apply(plain, 40, 256, r);
        QVERIFY(r.stop_at_speaker_line);
        QVERIFY(std::find(r.stop_strings.begin(), r.stop_strings.end(), "\n\n") != r.stop_strings.end());
        QVERIFY(std::find(r.stop_strings.begin(), r.stop_strings.end(), "\nUser:") != r.stop_strings.end());
        QCOMPARE(r.max_new_tokens, ChatStopRules::kDefaultMaxReplyTokens);
        // The reply length never runs past the context.
        rules.apply(plain, 100, 128, r);
        QCOMPARE(r.max_new_tokens, 28);
        rules.apply(plain, 128, 128, r);
        QCOMPARE(r.max_new_tokens, 1);

        rules.blank_line = false;
        rules.speaker_line = false;
        rules.max_reply_tokens = 7;
        rules.apply(plain, 10, 128, r);
        QVERIFY(!r.stop_at_speaker_line);
        QCOMPARE(r.stop_strings, std::vector<std::string>{"\nUser:"});
        QCOMPARE(r.max_new_tokens, 7);
        const auto said = rules.describe(plain);
        QCOMPARE(said, (std::vector<std::string>{"\u201cUser:\u201d on a new line", "7 tokens"}));
        QCOMPARE(ChatStopRules{}.describe(plain).size(), size_t(4));
    }

    void chatTemplatesKeepTheirOwnEnds()
    {
        const Tokenizer& tok = test::tiny_tokenizer(true);
        ChatTranscript chat(tok, ChatFormat{});
        // ChatML as Qwen's tokenizer_config.json spells it.
        const std::string chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                                   "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                                   "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        chat.set_template(ChatTemplate::from_tokenizer_config(
            nlohmann::json{{"chat_template", chatml}, {"bos_token", "<s>"}, {"eos_token", "</s>"}}, tok));
        QVERIFY(chat.chat_template().has_value());
        GenerationRequest r;
        ChatStopRules{}.apply(chat, 10, 128, r);
        QVERIFY(!r.stop_at_speaker_line);
        QVERIFY(std::find(r.stop_strings.begin(), r.stop_strings.end(), "\n\n") == r.stop_strings.end());
        QCOMPARE(r.stop_strings, chat.stop_strings());
    }
};

QTEST_APPLESS_MAIN(TestChatStopRules)
#include "tst_chat_stop_rules.moc"
