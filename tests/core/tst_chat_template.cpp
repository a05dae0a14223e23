// Chat templates: the templates real chat models ship (TinyLlama-Chat's
// Zephyr, Llama-2-chat's [INST], ChatML) are recognised from their Jinja
// source and rendered exactly as transformers renders them; an unknown one
// falls back to the plain transcript with a note; special tokens in the
// rendered text become their ids with the space prefix as LlamaTokenizer
// places it ("legacy" or not); and a conversation through a template
// forgets its oldest turns when the context is full.
#include "core/generate/chat_template.h"
#include "core/generate/chat_transcript.h"
#include "kernels/error.h"
#include "tests/support/tiny_hf_model.h"

#include <QTest>

using namespace crucible;
using nlohmann::json;

namespace {

// The templates as their models' tokenizer_config.json files hold them.
const char* kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% "
    "elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const char* kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

ChatTemplate from(const char* source, bool legacy = true)
{
    std::string note;
    auto t = ChatTemplate::from_tokenizer_config(
        json{{"chat_template", source}, {"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}, {"legacy", legacy}},
        test::tiny_tokenizer(true), &note);
    if (!t) qFatal("template not recognised: %s", note.c_str());
    return *t;
}

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi there"}, {"assistant", " Hello! "}, {"user", "Name a colour."}};

} // namespace

class TestChatTemplate : public QObject {
    Q_OBJECT

private slots:
    void zephyr()
    {
        const ChatTemplate t = from(kZephyr);
        QCOMPARE(t.style(), ChatStyle::zephyr);
        QCOMPARE(t.render(kConversation, true),
                 std::string("<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n Hello! </s>\n"
                             "<|user|>\nName a colour.</s>\n<|assistant|>\n"));
        QCOMPARE(t.render({{"user", "x"}}, false), std::string("<|user|>\nx</s>\n"));
        QVERIFY(std::find(t.stop_strings().begin(), t.stop_strings().end(), "<|user|>") != t.stop_strings().end());
    }

    void llama2()
    {
        const ChatTemplate t = from(kLlama2);
        QCOMPARE(t.style(), ChatStyle::llama2);
        QCOMPARE(t.render(kConversation, true),
                 std::string("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s>"
                             "<s>[INST] Name a colour. [/INST]"));
        QCOMPARE(t.render({{"user", " x "}}, true), std::string("<s>[INST] x [/INST]"));
        bool refused = false;
        try {
            t.render({{"user", "a"}, {"user", "b"}}, true);
        } catch (const Error& e) {
            refused = std::string(e.what()).find("alternate") != std::string::npos;
        }
        QVERIFY(refused);
    }

    void chatml()
    {
        const ChatTemplate t = from(kChatMl);
        QCOMPARE(t.style(), ChatStyle::chatml);
        QCOMPARE(t.render(kConversation, true),
                 std::string("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                             "<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                             "<|im_start|>assistant\n"));
        // <|im_end|> is no token of this vocabulary: a stop string then.
        QVERIFY(t.stop_tokens().empty());
        QCOMPARE(t.stop_strings().front(), std::string("<|im_end|>"));
    }

    void unknownTemplatesFallBack()
    {
        std::string note;
        const auto t = ChatTemplate::from_tokenizer_config(json{{"chat_template", "{{ messages | tojson }}"}},
                                                           test::tiny_tokenizer(true), &note);
        QVERIFY(!t);
        QVERIFY(note.find("does not recognise") != std::string::npos);
        QVERIFY(!ChatTemplate::from_tokenizer_config(json::object(), test::tiny_tokenizer(true)));
        bool refused = false;
        try {
            from(kZephyr).render({{"tool", "x"}}, true);
        } catch (const Error&) {
            refused = true;
        }
        QVERIFY(refused);
    }

    void specialTokensAndPrefix()
    {
        const Tokenizer& tok = test::tiny_tokenizer(true);
        const std::string text = "<s>[INST] Hi [/INST] Yes </s><s>[INST] More [/INST]";
        auto expect = [&](bool legacy) {
            std::vector<int32_t> ids = {tok.bos_id()};
            auto add = [&](std::vector<int32_t> part) { ids.insert(ids.end(), part.begin(), part.end()); };
            // Text after a special token gets the space prefix only from
            // "legacy" tokenizers.
            add(legacy ? tok.encode("[INST] Hi [/INST] Yes ") : tok.encode_continuation("[INST] Hi [/INST] Yes "));
            ids.push_back(tok.eos_id());
            ids.push_back(tok.bos_id());
            add(legacy ? tok.encode("[INST] More [/INST]") : tok.encode_continuation("[INST] More [/INST]"));
            return ids;
        };
        QCOMPARE(from(kLlama2, true).encode(text), expect(true));
        QCOMPARE(from(kLlama2, false).encode(text), expect(false));
        // Text before the first special token is the start of the text.
        const auto zephyr = from(kZephyr, false).encode("<|user|>\nHi</s>\n<|assistant|>\n");
        std::vector<int32_t> expected = tok.encode("<|user|>\nHi");
        expected.push_back(tok.eos_id());
        const auto tail = tok.encode_continuation("\n<|assistant|>\n");
        expected.insert(expected.end(), tail.begin(), tail.end());
        QCOMPARE(zephyr, expected);
    }

    void transcriptThroughTemplate()
    {
        const Tokenizer& tok = test::tiny_tokenizer(true);
        ChatFormat format;
        format.system = "Be brief.";
        ChatTranscript chat(tok, format);
        chat.set_template(from(kZephyr));
        std::vector<int32_t> ids;
        chat.prompt("Hi there", 10'000, ids);
        const ChatTemplate t = from(kZephyr);
        QCOMPARE(ids, t.encode(t.render({{"system", "Be brief."}, {"user", "Hi there"}}, true)));
        chat.reply({}, " Hello! ");
        chat.prompt("Name a colour.", 10'000, ids);
        QCOMPARE(ids, t.encode(t.render(kConversation, true)));
        QCOMPARE(chat.stop_strings(), t.stop_strings());
        chat.reply({}, "Red.");

        // A small context forgets the oldest turns first.
        const std::vector<ChatMessage> last_turn = {
            {"system", "Be brief."}, {"user", "Name a colour."}, {"assistant", "Red."}, {"user", "And?"}};
        const size_t budget = t.encode(t.render(last_turn, true)).size();
        QCOMPARE(chat.prompt("And?", budget, ids), 1);
        QCOMPARE(chat.forgotten(), size_t(1));
        QCOMPARE(ids, t.encode(t.render(last_turn, true)));
    }
};

QTEST_GUILESS_MAIN(TestChatTemplate)
#include "tst_chat_template.moc"
