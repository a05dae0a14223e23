// crucible-cli as a user meets it: every command has --help, a tiny run trains
// end to end, and bad input (missing or corrupt files, invalid settings, empty
// or binary corpora) ends with a clear message and a non-zero exit while
// leaving existing files untouched.
#include "core/io/file_util.h"
#include "core/train/run_dir.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

struct Result {
    int code = 0;
    std::string output;
};

Result cli(const std::string& args)
{
    Result r;
    r.code = test::run_command((test::binary_dir() / "bin" / "crucible-cli").string() + " " + args, &r.output);
    return r;
}

std::map<fs::path, std::string> snapshot(const fs::path& dir)
{
    std::map<fs::path, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) files[fs::relative(e.path(), dir)] = read_file(e.path());
    return files;
}

const char* kTinyModel = "--vocab 320 --d-model 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --context 96 --seq 64 --batch 4";

} // namespace

class CliTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path path(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }
    std::string quoted(const char* name) const
    {
        std::string q = "'";
        q.append(path(name).string()).push_back('\'');
        return q;
    }

    void expectFailure(const std::string& args, const char* message_part)
    {
        const Result r = cli(args);
        QVERIFY2(r.code != 0, ("expected failure for: " + args + "\n" + r.output).c_str());
        QVERIFY2(r.output.find("error:") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find(message_part) != std::string::npos,
                 ("missing \"" + std::string(message_part) + "\" in:\n" + r.output).c_str());
    }

private slots:
    void initTestCase()
    {
        const Result r = cli(std::string("train ") + kTinyModel + " --steps 3 --eval-every 3 --eval-batches 2 "
                             "--sample-tokens 8 --out " + quoted("run"));
        QVERIFY2(r.code == 0, r.output.c_str());
    }

    void everyCommandHasHelp()
    {
        for (const char* cmd : {"", "info", "train", "demo", "eval", "sample", "bench", "bench train",
                                "bench generate", "generate", "chat"}) {
            const Result r = cli(std::string(cmd) + " --help");
            QVERIFY2(r.code == 0, cmd);
            QVERIFY2(r.output.find("Usage") != std::string::npos || r.output.find("usage") != std::string::npos, cmd);
        }
    }

    void infoDescribesTheMachine()
    {
        const Result r = cli("info");
        QCOMPARE(r.code, 0);
        QVERIFY(r.output.find("CUDA backend") != std::string::npos);
        QVERIFY(r.output.find("nano") != std::string::npos);
    }

    void trainWroteAProgressLineAndACheckpoint()
    {
        RunDirectory run(path("run"));
        QCOMPARE(run.checkpoint_steps(), std::vector<int64_t>{3});
        QVERIFY(fs::exists(run.metrics_file()));
        // The model overrides reached the checkpoint (Hugging Face keys).
        const auto config = nlohmann::json::parse(read_file(run.checkpoint_dir(3) / "config.json"));
        QCOMPARE(config["max_position_embeddings"].get<int>(), 96);
        QCOMPARE(config["intermediate_size"].get<int>(), 128);
    }

    void evalAndSampleUseTheRun()
    {
        Result r = cli("eval --run " + quoted("run"));
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY(r.output.find("bits/byte") != std::string::npos);
        r = cli("eval --json --run " + quoted("run"));
        QVERIFY2(r.code == 0, r.output.c_str());
        const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
        QVERIFY(j["bits_per_byte"].get<double>() > 0);

        write_file_atomic(path("text.txt"), "To be, or not to be, that is the question.\n");
        r = cli("eval --run " + quoted("run") + " --text " + quoted("text.txt"));
        QVERIFY2(r.code == 0, r.output.c_str());

        r = cli("sample --run " + quoted("run") + " --prompt 'ROMEO:' --max-tokens 12 --temperature 0");
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY(r.output.rfind("ROMEO:", 0) == 0);
        // Greedy sampling is deterministic (the timing line on stderr is not).
        const auto text = [](const std::string& out) { return out.substr(0, out.rfind("\n[")); };
        QCOMPARE(text(cli("sample --run " + quoted("run") + " --prompt 'ROMEO:' --max-tokens 12 --temperature 0").output),
                 text(r.output));
    }

    void benchSuitesWriteAndCompareResults()
    {
        // A suite at its tiny size writes a results file; two of them compare
        // row by row; a truncated one is refused with a message.
        for (const char* name : {"a.jsonl", "b.jsonl"}) {
            const Result r = cli("bench norms --size tiny --threads 1 --widths 32 --out " + quoted(name));
            QVERIFY2(r.code == 0, r.output.c_str());
            QVERIFY2(r.output.find("rmsnorm") != std::string::npos, r.output.c_str());
        }
        const Result cmp = cli("bench compare " + quoted("a.jsonl") + " " + quoted("b.jsonl"));
        QVERIFY2(cmp.code == 0 && cmp.output.find("B/A") != std::string::npos, cmp.output.c_str());
        QVERIFY2(cmp.output.find("norms layernorm op=norm pass=fwd C=32 gbs") != std::string::npos, cmp.output.c_str());
        const std::string whole = read_file(path("a.jsonl"));
        write_file_atomic(path("cut.jsonl"), whole.substr(0, whole.size() / 2));
        expectFailure("bench compare " + quoted("a.jsonl") + " " + quoted("cut.jsonl"), "cut short");
        expectFailure("bench norms --size tiny --widths 0", "positive integers");
        expectFailure("bench warp", "warp");

        // bench attention keeps its table, now over the attention suite.
        const Result att = cli("bench attention --device cpu --head-dims 16 --seqs 16,32 --tokens 64 --model-dim 32 "
                               "--repeats 1 --warmup 1 --out " + quoted("att.jsonl"));
        QVERIFY2(att.code == 0, att.output.c_str());
        for (const char* part : {"flash/naive", "D16 T16", "D16 T32", "fwd TFLOP/s"})
            QVERIFY2(att.output.find(part) != std::string::npos, (part + std::string(" in ") + att.output).c_str());
        QVERIFY(read_file(path("att.jsonl")).find("\"series\":\"naive\"") != std::string::npos);
    }

    void benchAttentionComparesWithTheFastestSdpaBackend()
    {
        // A stand-in peer reports SDPA per backend, one of them failing: the
        // peer columns take the fastest backend of each phase, the ratios
        // divide by it, and every backend lands in the sdpa_backends table.
        const fs::path script = path("fake_sdpa_peer.py");
        {
            std::ofstream f(script);
            f << "import json\n"
                 "rows = [('default', 2.0, 1.0), ('cudnn', 4.0, 0.5), ('flash', None, None), ('efficient', 1.0, 3.0)]\n"
                 "for name, fwd, fb in rows:\n"
                 "    r = {'peer': 'fake-sdpa', 'torch': '0', 'backend': name, 'label': 'D64 T64'}\n"
                 "    if fwd is None: r['error'] = 'no kernel'\n"
                 "    else: r.update(fwd_tflops=fwd, fwdbwd_tflops=fb)\n"
                 "    print(json.dumps(r))\n";
        }
        const Result r = cli("bench attention --device cpu --head-dims 64 --seqs 64 --tokens 64 --model-dim 128"
                             " --warmup 0 --repeats 1 --no-naive --peer --peer-script '" + script.string() + "' --json");
        QVERIFY2(r.code == 0, r.output.c_str());
        const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
        const auto& row = j.at("rows").at(0);
        QCOMPARE(row.at("peer_fwd_tflops").get<double>(), 4.0);      // cuDNN, not the default choice
        QCOMPARE(row.at("peer_fwdbwd_tflops").get<double>(), 3.0);   // efficient
        QCOMPARE(row.at("fwd_vs_peer").get<double>(), row.at("fwd_tflops").get<double>() / 4.0);
        QCOMPARE(row.at("fwdbwd_vs_peer").get<double>(), row.at("fwdbwd_tflops").get<double>() / 3.0);
        const auto& backends = j.at("sdpa_backends").at("rows").at(0);
        QCOMPARE(backends.at("fwd_default").get<double>(), 2.0);
        QVERIFY(backends.at("fwd_flash").is_null());
        QCOMPARE(backends.at("fwdbwd_cudnn").get<double>(), 0.5);
        QVERIFY2(j.at("sdpa_backends").at("notes").dump().find("flash: no kernel") != std::string::npos,
                 j.dump().c_str());
    }

    void benchTrainSaysWhenThePeerHadABusyMachine()
    {
        // A one-thread peer that got a third of the wall clock is flagged: its
        // rate says more about the machine than about PyTorch. With two
        // threads a low share can be passive waiting, so it says nothing.
        const fs::path script = path("fake_train_peer.py");
        {
            std::ofstream f(script);
            f << "import json\n"
                 "print(json.dumps({'peer': 'fake', 'device': 'cpu', 'threads': 1, 'tokens_per_s': 100.0,"
                 " 'ms_per_step': 1.0, 'cpu_share': 0.33}))\n"
                 "print(json.dumps({'peer': 'fake', 'device': 'cpu', 'threads': 2, 'tokens_per_s': 150.0,"
                 " 'ms_per_step': 1.0, 'cpu_share': 0.3}))\n";
        }
        const Result r = cli("bench train --device cpu --preset nano --batch 2 --seq 32 --steps 1 --warmup 0"
                             " --peer --peer-script '" + script.string() + "'");
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY2(r.output.find("PyTorch with 1 thread ran only 33% of the time") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("30%") == std::string::npos, r.output.c_str());
    }

    void benchGenerateMeasuresARun()
    {
        // The generation benchmark on the trained run, with the run as its own
        // draft: one JSON entry per batch with a rate at every length for KV
        // decoding, full recompute and speculative decoding. A draft equal to
        // its target proposes what the target would pick, so (up to float
        // noise between a one-row step and a verification chunk) every
        // proposal is accepted.
        const Result r = cli("bench generate --run " + quoted("run") + " --draft " + quoted("run") +
                             " --batch 1 --batch 2 --prompt-tokens 8 --new-tokens 24 --lengths 8 --repeats 1"
                             " --no-graphs --no-fused --json");
        QVERIFY2(r.code == 0, r.output.c_str());
        const auto all = nlohmann::json::parse(r.output.substr(r.output.find('[')));
        QCOMPARE(all.size(), size_t(2));
        for (const auto& entry : all) {
            QVERIFY(entry.at("prefill_tokens_per_s").get<double>() > 0.0);
            const auto& points = entry.at("points");
            QCOMPARE(points.size(), size_t(2));
            QCOMPARE(points[0].at("length").get<int>(), 8);
            QCOMPARE(points[1].at("length").get<int>(), 24);
            for (const auto& p : points)
                for (const char* rate : {"kv_tokens_per_s", "recompute_tokens_per_s", "speculative_tokens_per_s"})
                    QVERIFY2(p.at(rate).is_number() && p.at(rate).get<double>() > 0.0, rate);
            const double acceptance = entry.at("acceptance_rate").get<double>();
            qInfo("batch %d: self-draft acceptance %.3f", entry.at("batch").get<int>(), acceptance);
            QVERIFY(acceptance >= 0.9 && acceptance <= 1.0);
        }
    }

    void modelTooLargeForMemoryIsRefused()
    {
        // The estimate (terabytes of activations) is checked before anything
        // is allocated or written, and the message says what to lower.
        expectFailure("train --preset small --batch 65536 --steps 1 --out " + quoted("huge"),
                      "Lower the batch size or sequence length");
        QVERIFY(!fs::exists(path("huge")));
    }

    void missingRunIsReported() { expectFailure("eval --run " + quoted("nowhere"), "not found"); }

    void corruptWeightsAreReported()
    {
        fs::copy(path("run"), path("broken"), fs::copy_options::recursive);
        const fs::path model = RunDirectory(path("broken")).checkpoint_dir(3) / "model.safetensors";
        const std::string good = read_file(model);

        write_file_atomic(model, good.substr(0, good.size() - 1000));
        expectFailure("eval --run " + quoted("broken"), "model.safetensors");
        write_file_atomic(model, std::string("garbage that is not a safetensors file at all"));
        expectFailure("eval --run " + quoted("broken"), "model.safetensors");
        fs::remove(model);
        expectFailure("sample --run " + quoted("broken"), "model.safetensors");
    }

    void wrongShapesAreReported()
    {
        // A checkpoint of another configuration under this run's config.
        const Result other = cli("train --vocab 320 --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ff 64 --seq 64 "
                                 "--batch 4 --steps 1 --eval-every 1 --eval-batches 1 --sample-tokens 0 --out " +
                                 quoted("other"));
        QVERIFY2(other.code == 0, other.output.c_str());
        fs::copy(path("run"), path("mixed"), fs::copy_options::recursive);
        fs::copy_file(RunDirectory(path("other")).checkpoint_dir(1) / "model.safetensors",
                      RunDirectory(path("mixed")).checkpoint_dir(3) / "model.safetensors",
                      fs::copy_options::overwrite_existing);
        expectFailure("eval --run " + quoted("mixed"), "shape");
    }

    void invalidSettingsAreRefused()
    {
        expectFailure("train --heads 4 --kv-heads 3 --steps 1 --out " + quoted("bad1"), "divisible");
        QVERIFY(!fs::exists(path("bad1")));
        expectFailure("train --preset gigantic --out " + quoted("bad2"), "unknown preset");
        expectFailure("train --batch 0 --out " + quoted("bad3"), "batch size");
        expectFailure("train --optimizer sgd --out " + quoted("bad4"), "adamw or muon");
        write_file_atomic(path("bad.json"), "{\"model\": {\"n_heads\": 4, \"n_kv_heads\": 3}}");
        expectFailure("train --config " + quoted("bad.json") + " --out " + quoted("bad5"), "divisible");
        write_file_atomic(path("typo.json"), "{\"d_modle\": 64}");
        expectFailure("train --config " + quoted("typo.json") + " --out " + quoted("bad6"), "unknown key");
        write_file_atomic(path("broken.json"), "{\"d_model\": ");
        expectFailure("train --config " + quoted("broken.json") + " --out " + quoted("bad7"), "not valid JSON");
    }

    void badCorporaAreRefused()
    {
        write_file_atomic(path("empty.txt"), "");
        expectFailure(std::string("train ") + kTinyModel + " --steps 1 --data " + quoted("empty.txt") + " --out " +
                          quoted("bad8"),
                      "empty");
        write_file_atomic(path("image.png"), std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16) + std::string(4096, '\0'));
        expectFailure(std::string("train ") + kTinyModel + " --steps 1 --data " + quoted("image.png") + " --out " +
                          quoted("bad9"),
                      "image.png");
        expectFailure("eval --run " + quoted("run") + " --text " + quoted("image.png"), "image.png");
    }

    void existingRunIsNotOverwritten()
    {
        const auto before = snapshot(path("run"));
        expectFailure(std::string("train ") + kTinyModel + " --steps 1 --out " + quoted("run"), "already exists");
        QVERIFY(snapshot(path("run")) == before);
    }

    void dataParallelFlags()
    {
        Result r = cli(std::string("train ") + kTinyModel + " --steps 2 --eval-batches 1 --sample-tokens 0 "
                       "--cpu-replicas 2 --out " + quoted("replicas"));
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY2(r.output.find("2 × ") != std::string::npos, r.output.c_str());   // the device line names both
        // The run goes on with one replica.
        r = cli("train --resume " + quoted("replicas") + " --steps 3 --cpu-replicas 1");
        QVERIFY2(r.code == 0, r.output.c_str());
        QCOMPARE(RunDirectory(path("replicas")).checkpoint_steps().back(), int64_t(3));
        expectFailure("train --gpus 0,x --out " + quoted("bad10"), "--gpus takes GPU numbers");
        expectFailure("train --gpus 1,1 --out " + quoted("bad11"), "listed twice");
        expectFailure("train --cpu-replicas 0 --out " + quoted("bad12"), "replicas");
        QVERIFY(!fs::exists(path("bad10")) && !fs::exists(path("bad11")) && !fs::exists(path("bad12")));
    }

    void typosAreAnsweredWithTheNearestName()
    {
        Result r = cli("train --stpes 10");
        QVERIFY(r.code != 0);
        QVERIFY2(r.output.find("has no option --stpes. Did you mean --steps?") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("not expected") == std::string::npos, r.output.c_str());
        r = cli("trian --steps 3");
        QVERIFY(r.code != 0);
        QVERIFY2(r.output.find("'trian' is not a command. Did you mean 'train'?") != std::string::npos, r.output.c_str());
        r = cli("bench genrate");
        QVERIFY2(r.output.find("Did you mean 'generate'?") != std::string::npos, r.output.c_str());
        // The unknown option, not the --run it pushed out, is the mistake named.
        r = cli("sample --rnu " + quoted("run"));
        QVERIFY2(r.output.find("Did you mean --run?") != std::string::npos, r.output.c_str());
        // Nothing close: no guess.
        r = cli("train --zzzzzz 1");
        QVERIFY2(r.output.find("has no option --zzzzzz.") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("Did you mean") == std::string::npos, r.output.c_str());
    }

    void settingsAreCheckedBeforeAnythingElse()
    {
        // Only the value given is reported, not a warmup derived from it.
        Result r = cli("train --steps -5 --out " + quoted("never"));
        QVERIFY(r.code != 0);
        QVERIFY2(r.output.find("steps must be at least 1") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("warmup") == std::string::npos, r.output.c_str());
        QVERIFY(!fs::exists(path("never")));
        // A bad sampling setting stops sample before it prints the prompt.
        r = cli("sample --run " + quoted("run") + " --temperature -1 --prompt 'PROMPTTEXT'");
        QVERIFY(r.code != 0);
        QVERIFY2(r.output.find("temperature") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("PROMPTTEXT") == std::string::npos, r.output.c_str());
    }

    void sampleEndsItsLineInWholeCharacters()
    {
        // Hot sampling after a non-ASCII prompt draws byte-fallback pieces;
        // wherever the token limit cuts, stdout ends in a whole character and
        // a newline (the model may still write bytes that are no UTF-8 at
        // all: those are its text).
        for (int seed = 1; seed <= 6; ++seed) {
            const fs::path out = path("sample.txt");
            const std::string command = "( '" + (test::binary_dir() / "bin" / "crucible-cli").string() + "' sample --run " +
                                        quoted("run") + " --prompt 'Ünïcødé → ' --max-tokens " + std::to_string(4 + seed) +
                                        " --temperature 1.5 --seed " + std::to_string(seed) + " > " + quoted("sample.txt") +
                                        " ) 2>/dev/null";
            std::string output;
            QVERIFY2(test::run_command(command, &output) == 0, output.c_str());
            const std::string text = read_file(out);
            QVERIFY(text.rfind("Ünïcødé → ", 0) == 0);
            QCOMPARE(text.back(), '\n');
            // No lead byte at the end still waiting for its continuation bytes.
            const std::string body = text.substr(0, text.size() - 1);
            size_t back = 0;
            while (back < body.size() && back < 3 && (static_cast<unsigned char>(body[body.size() - 1 - back]) & 0xC0) == 0x80)
                ++back;
            if (back < body.size()) {
                const auto lead = static_cast<unsigned char>(body[body.size() - 1 - back]);
                const size_t needed = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
                QVERIFY2(lead < 0xC0 || needed <= back + 1, text.c_str());
            }
        }
    }

    void chatRepliesEndByTheirRules()
    {
        // The default rules are printed, and a reply of a plain-text model
        // ends by a rule or its length, never by a full context.
        const fs::path input = path("chat-input.txt");
        write_file_atomic(input, "Good morrow\nWhat news?\n/quit\n");
        const Result r = cli("chat --run " + quoted("run") + " --temperature 0 < " + quoted("chat-input.txt"));
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY2(r.output.find("A reply ends at a blank line, a new speaker (a line starting \u201cName:\u201d), "
                               "\u201cUser:\u201d on a new line or 100 tokens.") != std::string::npos,
                 r.output.c_str());
        QVERIFY2(r.output.find("context full") == std::string::npos, r.output.c_str());
        const Result off = cli("chat --run " + quoted("run") + " --no-stop-at-blank-line --no-stop-at-speaker "
                               "--max-tokens 7 --temperature 0 < " + quoted("chat-input.txt"));
        QVERIFY2(off.code == 0, off.output.c_str());
        QVERIFY2(off.output.find("A reply ends at \u201cUser:\u201d on a new line or 7 tokens.") != std::string::npos,
                 off.output.c_str());
    }

    void appHelpNeedsNoDisplay()
    {
        const fs::path app = test::binary_dir() / "bin" / "crucible";
        if (!fs::exists(app)) QSKIP("built without the desktop app");
        std::string out;
        // The window system a desktop would use, and no display to reach.
        const int code = test::run_command("env -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=xcb '" + app.string() +
                                               "' --help",
                                           &out);
        QVERIFY2(code == 0, out.c_str());
        QVERIFY2(out.find("--benchmark-gui") != std::string::npos && out.find("--device") != std::string::npos,
                 out.c_str());
    }

    void resumeOfNonRunIsRefused()
    {
        fs::create_directories(path("not_a_run"));
        expectFailure("train --resume " + quoted("not_a_run"), "not a run");
    }
};

QTEST_APPLESS_MAIN(CliTest)
#include "tst_cli.moc"
