// Benchmark suites (core/bench): every suite runs on the CPU at its tiny
// size and streams finite, positive measurements; cancellation stops a suite
// within one measurement; results files round-trip and refuse truncated,
// foreign and newer files; the comparison pairs rows; the claims table
// reaches each verdict from crafted rows, and reads measured rows.
#include "core/bench/claims.h"
#include "core/bench/hardware_limits.h"
#include "core/bench/results_file.h"
#include "core/bench/suite.h"
#include "core/io/file_util.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <set>

using namespace crucible;
using namespace crucible::bench;
namespace fs = std::filesystem;

namespace {

SuiteRequest tiny_cpu()
{
    SuiteRequest r;
    r.device = DeviceKind::cpu;
    r.threads = 1;
    r.size = SizeClass::tiny;
    return r;
}

// Cancels as soon as `after` rows have arrived, and counts what comes later.
class CancellingSink : public CollectingSink {
public:
    CancellingSink(CancelToken& token, size_t after) : m_token(token), m_after(after) {}
    void row(const Row& r) override
    {
        CollectingSink::row(r);
        if (rows.size() == m_after) m_token.request();
        else if (rows.size() > m_after) ++late_rows;
    }
    size_t late_rows = 0;

private:
    CancelToken& m_token;
    size_t m_after;
};

Row row(const std::string& suite, const std::string& series, const std::string& x_name, double x,
        std::vector<Measure> y, std::map<std::string, std::string> tags = {})
{
    Row r;
    r.suite = suite;
    r.series = series;
    r.x_name = x_name;
    r.x = x;
    r.y = std::move(y);
    r.tags = std::move(tags);
    return r;
}

const ClaimResult& claim(const std::vector<ClaimResult>& all, const std::string& id)
{
    for (const auto& c : all)
        if (c.claim.id == id) return c;
    throw Error("no claim " + id);
}

// Measures that may be zero or negative: a change, a reference's error, the
// clock at step 0.
const std::set<std::string> kSigned = {"delta_bpb", "mse", "seconds"};

} // namespace

class TestBenchSuites : public QObject {
    Q_OBJECT

private slots:
    void registryDescribesEverySuite()
    {
        QVERIFY(suites().size() >= 9);
        std::set<std::string> ids;
        for (const SuiteInfo& s : suites()) {
            QVERIFY2(ids.insert(s.id).second, s.id.c_str());
            QVERIFY(!s.title.empty() && !s.measures.empty() && !s.x_name.empty());
            QVERIFY(!s.series.empty() && !s.charts.empty() && !s.options.empty());
            for (const SuiteOption& o : s.options) QVERIFY(!o.description.empty());
            QCOMPARE(find_suite(s.id), &s);
        }
        QVERIFY(!find_suite("no-such-suite"));
    }

    void eachSuiteRunsTinyOnTheCpu_data()
    {
        QTest::addColumn<QString>("id");
        for (const SuiteInfo& s : suites()) QTest::newRow(s.id.c_str()) << QString::fromStdString(s.id);
    }

    void eachSuiteRunsTinyOnTheCpu()
    {
        QFETCH(QString, id);
        const SuiteInfo* info = find_suite(id.toStdString());
        QVERIFY(info);
        struct Sink : CollectingSink {
            void started(const SuiteInfo&, const std::string& d) override { device = d; }
            void progress(double f, const std::string&) override
            {
                monotonic = monotonic && f >= last;
                last = f;
            }
            void finished(const std::string& s, Outcome o, const std::string& m) override
            {
                ++finishes;
                CollectingSink::finished(s, o, m);
            }
            std::string device;
            double last = 0;
            bool monotonic = true;
            int finishes = 0;
        } sink;
        CancelToken cancel;
        const Outcome o = run_suite(info->id, tiny_cpu(), sink, cancel);
        QVERIFY2(o == Outcome::completed, sink.error.c_str());
        QCOMPARE(sink.finishes, 1);
        QVERIFY(!sink.device.empty());
        QVERIFY(sink.monotonic);
        QCOMPARE(sink.last, 1.0);
        QVERIFY(!sink.rows.empty());
        const std::set<std::string> series(info->series.begin(), info->series.end());
        std::set<std::string> metrics;
        for (const Row& r : sink.rows) {
            QCOMPARE(r.suite, info->id);
            QVERIFY2(series.count(r.series), ("unlisted series " + r.series).c_str());
            QVERIFY(!r.y.empty());
            QVERIFY(std::isfinite(r.x));
            for (const Measure& m : r.y) {
                metrics.insert(m.key);
                QVERIFY2(std::isfinite(m.value), (r.label() + " " + m.key).c_str());
                if (!kSigned.count(m.key)) QVERIFY2(m.value > 0, (r.label() + " " + m.key).c_str());
            }
        }
        // Every chart the page draws gets points.
        for (const ChartInfo& c : info->charts) QVERIFY2(metrics.count(c.metric), (info->id + ": " + c.metric).c_str());
    }

    void attentionComparesFlashWithNaive()
    {
        CollectingSink sink;
        CancelToken cancel;
        QCOMPARE(run_suite("attention", tiny_cpu(), sink, cancel), Outcome::completed);
        std::set<std::string> series;
        for (const Row& r : sink.rows)
            if (r.tag("pass") == "fwd") {
                series.insert(r.series);
                QVERIFY(r.get("peak_bytes").has_value());
            }
        QVERIFY(series.count("flash") && series.count("naive"));
        // The naive kernel holds every T×T score: more memory at every size.
        for (const Row& n : sink.rows)
            if (n.series == "naive")
                for (const Row& f : sink.rows)
                    if (f.series == "flash" && f.x == n.x && f.tags == n.tags)
                        QVERIFY(*n.get("peak_bytes") > *f.get("peak_bytes"));
    }

    void cancelStopsWithinOneMeasurement_data()
    {
        QTest::addColumn<QString>("id");
        QTest::addColumn<int>("rows_per_measurement");
        QTest::addColumn<QString>("option");   // key=value: enough measurements to stop between
        QTest::newRow("attention") << "attention" << 1 << "";
        QTest::newRow("norms") << "norms" << 1 << "";
        QTest::newRow("train") << "train" << 6 << "presets=tiny,nano";
        QTest::newRow("optimizers") << "optimizers" << 1 << "";
        QTest::newRow("finetune") << "finetune" << 1 << "";
        QTest::newRow("gqa") << "gqa" << 1 << "";
        QTest::newRow("kv_cache") << "kv_cache" << 2 << "";   // one decode run gives a rate per length
        QTest::newRow("decode") << "decode" << 1 << "";
        QTest::newRow("quant") << "quant" << 1 << "";
    }

    void cancelStopsWithinOneMeasurement()
    {
        QFETCH(QString, id);
        QFETCH(int, rows_per_measurement);
        QFETCH(QString, option);
        SuiteRequest request = tiny_cpu();
        if (const auto kv = option.split('='); kv.size() == 2) request.options[kv[0].toStdString()] = kv[1].toStdString();
        CancelToken cancel;
        CancellingSink sink(cancel, 1);
        QCOMPARE(run_suite(id.toStdString(), request, sink, cancel), Outcome::cancelled);
        QVERIFY2(sink.late_rows < size_t(rows_per_measurement), std::to_string(sink.late_rows).c_str());

        // Cancelled before it starts: no row at all.
        CancelToken early;
        early.request();
        CollectingSink none;
        QCOMPARE(run_suite(id.toStdString(), request, none, early), Outcome::cancelled);
        QVERIFY(none.rows.empty());
    }

    void badRequestsFailWithAMessage()
    {
        CancelToken cancel;
        CollectingSink unknown;
        QCOMPARE(run_suite("warp-drive", tiny_cpu(), unknown, cancel), Outcome::failed);
        QVERIFY(unknown.error.find("attention") != std::string::npos);   // lists the suites

        SuiteRequest r = tiny_cpu();
        r.options["colour"] = "blue";
        CollectingSink bad_key;
        QCOMPARE(run_suite("norms", r, bad_key, cancel), Outcome::failed);
        QVERIFY(bad_key.error.find("widths") != std::string::npos);

        r.options = {{"widths", "64,lots"}};
        CollectingSink bad_value;
        QCOMPARE(run_suite("norms", r, bad_value, cancel), Outcome::failed);
        QVERIFY(bad_value.error.find("widths") != std::string::npos);
        QVERIFY(bad_value.rows.empty());
    }

    void optionsOverrideDefaults()
    {
        SuiteRequest r = tiny_cpu();
        r.options["widths"] = "96";
        CollectingSink sink;
        CancelToken cancel;
        QCOMPARE(run_suite("norms", r, sink, cancel), Outcome::completed);
        for (const Row& row : sink.rows) QCOMPARE(row.x, 96.0);
        const SuiteInfo& norms = *find_suite("norms");
        QCOMPARE(r.option(norms, "rows"), norms.option("rows")->tiny);
        r.size = SizeClass::standard;
        r.device = DeviceKind::cuda;
        QCOMPARE(r.option(norms, "rows"), norms.option("rows")->cuda_default);
    }

    void hardwareLimits()
    {
        QCOMPARE(find_known_gpu("NVIDIA H100 80GB HBM3")->bf16_tflops, 989.0);
        QCOMPARE(find_known_gpu("NVIDIA H100 PCIe")->bandwidth_gbs, 2000.0);
        QCOMPARE(find_known_gpu("NVIDIA H200")->bandwidth_gbs, 4800.0);
        QCOMPARE(find_known_gpu("NVIDIA A100-SXM4-80GB")->bandwidth_gbs, 2039.0);
        QCOMPARE(find_known_gpu("NVIDIA GeForce RTX 4090")->bf16_tflops, 165.0);
        QCOMPARE(find_known_gpu("NVIDIA L40S")->bf16_tflops, 362.0);
        QVERIFY(!find_known_gpu("Imaginary Accelerator 9000"));
        BackendOptions bo;
        bo.threads = 1;
        auto cpu = make_backend(bo);
        const HardwareLimits h = hardware_limits(*cpu);
        QVERIFY(h.peak_tflops > 0 && std::isfinite(h.peak_tflops));
        QVERIFY(h.bandwidth_gbs > 0 && std::isfinite(h.bandwidth_gbs));
        QVERIFY(h.source.find("measured") != std::string::npos);
        // Measured once per device, then the same answer.
        QCOMPARE(hardware_limits(DeviceKind::cpu, 1).peak_tflops, h.peak_tflops);
    }

    void resultsFilesRoundTrip()
    {
        QTemporaryDir dir;
        BackendOptions bo;
        bo.threads = 1;
        auto cpu = make_backend(bo);
        ResultsFile f;
        f.machine = collect_machine_facts(cpu.get());
        QVERIFY(!f.machine.cpu_model.empty() && f.machine.cpu_cores > 0 && !f.machine.git_revision.empty());
        f.started = utc_now_iso();
        f.rows.push_back(row("attention", "flash", "T", 1024, {{"ms", 1.5, "ms"}, {"tflops", 12.25, "TFLOP/s"}},
                             {{"D", "64"}, {"pass", "fwd"}}));
        f.rows.push_back(row("norms", "rmsnorm", "C", 512, {{"gbs", 33.0, "GB/s"}}));
        f.notes.push_back("a note, with \"quotes\"");
        const fs::path path = fs::path(dir.path().toStdString()) / "sub" / "run.jsonl";
        write_results(path, f);
        const ResultsFile back = read_results(path);
        QCOMPARE(back.machine.cpu_model, f.machine.cpu_model);
        QCOMPARE(back.machine.git_revision, f.machine.git_revision);
        QCOMPARE(back.machine.peak_tflops, f.machine.peak_tflops);
        QCOMPARE(back.started, f.started);
        QCOMPARE(back.rows.size(), f.rows.size());
        QCOMPARE(back.rows[0].tags, f.rows[0].tags);
        QCOMPARE(*back.rows[0].get("tflops"), 12.25);
        QCOMPARE(back.rows[0].y[1].unit, std::string("TFLOP/s"));
        QCOMPARE(back.notes, f.notes);
        QCOMPARE(back.to_jsonl(), f.to_jsonl());
    }

    void recorderKeepsWhatASuiteMeasured()
    {
        // Rows pass through to the next sink and into the file as they come;
        // a cancelled run keeps its rows and says it was cancelled.
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "run.jsonl";
        CancelToken cancel;
        CancellingSink next(cancel, 3);
        ResultsRecorder recorder(path, collect_machine_facts(nullptr), &next);
        QVERIFY(fs::exists(path));   // written at once: a bad path fails before measuring
        QCOMPARE(run_suite("norms", tiny_cpu(), recorder, cancel), Outcome::cancelled);
        const ResultsFile back = read_results(path);
        QCOMPARE(back.rows.size(), next.rows.size());
        QVERIFY(back.rows.size() >= 3);
        for (size_t i = 0; i < back.rows.size(); ++i) QCOMPARE(back.rows[i].label(), next.rows[i].label());
        QVERIFY(!back.notes.empty() && back.notes.back().find("norms: cancelled") == 0);
        QVERIFY_THROWS_EXCEPTION(Error, ResultsRecorder(fs::path("/proc/no/such/dir/run.jsonl"), MachineFacts{}));
    }

    void appResultsGoUnderTheDataFolder()
    {
        const QByteArray saved = qgetenv("XDG_DATA_HOME");
        QTemporaryDir dir;
        qputenv("XDG_DATA_HOME", dir.path().toUtf8());
        const fs::path p = new_results_path("attention + norms");
        QCOMPARE(p.parent_path(), fs::path(dir.path().toStdString()) / "crucible" / "benchmarks");
        QCOMPARE(p.extension().string(), std::string(".jsonl"));
        QVERIFY2(p.filename().string().find("attention___norms") != std::string::npos, p.c_str());
        write_results(p, ResultsFile{});
        QVERIFY(new_results_path("attention + norms") != p);   // one file per run, never over another
        qputenv("XDG_DATA_HOME", saved);
    }

    void truncatedForeignAndNewerFilesAreRefused()
    {
        QTemporaryDir dir;
        ResultsFile f;
        f.rows.push_back(row("norms", "rmsnorm", "C", 512, {{"gbs", 33.0, "GB/s"}}));
        f.rows.push_back(row("norms", "layernorm", "C", 512, {{"gbs", 30.0, "GB/s"}}));
        const std::string whole = f.to_jsonl();
        auto refused = [&](const std::string& text, const std::string& expect) {
            const fs::path p = fs::path(dir.path().toStdString()) / "x.jsonl";
            write_file_atomic(p, text);
            try {
                read_results(p);
            } catch (const Error& e) {
                const std::string m = e.what();
                if (m.find(expect) == std::string::npos) QFAIL(("unexpected message: " + m).c_str());
                return;
            }
            QFAIL(("accepted: " + text.substr(0, 60)).c_str());
        };
        refused(whole.substr(0, whole.size() - 10), "cut short");   // stops mid-line
        refused(whole.substr(0, whole.size() - 1), "cut short");    // last line unterminated
        refused("", "empty");
        refused("{\"benchmark\":\"bench train\",\"rows\":[]}\n", "not a Crucible benchmark results file");
        refused("step,loss\n1,2.5\n", "not a Crucible benchmark results file");
        refused("{\"format\":\"crucible-bench\",\"version\":99}\n", "newer");
        std::string bad_row = whole;
        bad_row.insert(bad_row.find("{\"row\""), "{\"row\":{\"suite\":\"norms\"}}\n");
        refused(bad_row, "line 2");
    }

    void compareGivesRatios()
    {
        ResultsFile a, b;
        a.rows.push_back(row("norms", "rmsnorm", "C", 512, {{"gbs", 20.0, "GB/s"}, {"ms", 2.0, "ms"}}));
        a.rows.push_back(row("norms", "rmsnorm", "C", 1024, {{"gbs", 25.0, "GB/s"}}));
        b.rows.push_back(row("norms", "rmsnorm", "C", 512, {{"gbs", 50.0, "GB/s"}, {"ms", 0.8, "ms"}}));
        b.rows.push_back(row("norms", "layernorm", "C", 512, {{"gbs", 40.0, "GB/s"}}));
        const auto c = compare_results(a, b);
        QCOMPARE(c.size(), size_t(2));
        for (const auto& v : c) {
            QCOMPARE(v.x, 512.0);
            QCOMPARE(v.ratio, v.b / v.a);
        }
        QCOMPARE(c[0].ratio, 2.5);
    }

    void claimsHoldOrNotFromCraftedRows()
    {
        auto norms = [](double ln_ms_512, double ln_ms_4096) {
            return std::vector<Row>{
                row("norms", "rmsnorm", "C", 512, {{"ms", 1.0, "ms"}}, {{"op", "norm"}, {"pass", "fwd"}}),
                row("norms", "layernorm", "C", 512, {{"ms", ln_ms_512, "ms"}}, {{"op", "norm"}, {"pass", "fwd"}}),
                row("norms", "rmsnorm", "C", 4096, {{"ms", 1.0, "ms"}}, {{"op", "norm"}, {"pass", "fwd"}}),
                row("norms", "layernorm", "C", 4096, {{"ms", ln_ms_4096, "ms"}}, {{"op", "norm"}, {"pass", "fwd"}})};
        };
        QCOMPARE(claim(evaluate_claims(norms(1.3, 1.4)), "rmsnorm").verdict, Verdict::holds);
        QCOMPARE(claim(evaluate_claims(norms(1.05, 1.1)), "rmsnorm").verdict, Verdict::does_not_hold);
        const ClaimResult mixed = claim(evaluate_claims(norms(1.05, 1.5)), "rmsnorm");
        QCOMPARE(mixed.verdict, Verdict::depends_on_size);
        QVERIFY2(mixed.turns_at.find("C=4096") != std::string::npos, mixed.turns_at.c_str());
        QCOMPARE(mixed.value, 50.0);

        // Nothing measured: no verdict.
        for (const ClaimResult& c : evaluate_claims({})) QCOMPARE(c.verdict, Verdict::not_measured);

        // Flash: 3× faster and 4× less memory holds; at 1.2× it does not.
        auto attention = [](double naive_ms) {
            const std::map<std::string, std::string> t{{"D", "64"}, {"pass", "fwd"}};
            return std::vector<Row>{row("attention", "flash", "T", 2048, {{"ms", 1.0, "ms"}, {"peak_bytes", 1e6, "bytes"}}, t),
                                    row("attention", "naive", "T", 2048, {{"ms", naive_ms, "ms"}, {"peak_bytes", 4e6, "bytes"}}, t)};
        };
        QCOMPARE(claim(evaluate_claims(attention(3.0)), "flash_attention").verdict, Verdict::holds);
        QCOMPARE(claim(evaluate_claims(attention(1.2)), "flash_attention").verdict, Verdict::does_not_hold);

        // GQA: 8 → 2 kv-heads is 75% less cache; 8 → 4 only 50%.
        std::vector<Row> gqa{row("gqa", "kv_cache", "kv_heads", 8, {{"cache_bytes", 800, "bytes"}}),
                             row("gqa", "kv_cache", "kv_heads", 4, {{"cache_bytes", 400, "bytes"}})};
        QCOMPARE(claim(evaluate_claims(gqa), "gqa").verdict, Verdict::does_not_hold);
        gqa.push_back(row("gqa", "kv_cache", "kv_heads", 2, {{"cache_bytes", 200, "bytes"}}));
        const ClaimResult g = claim(evaluate_claims(gqa), "gqa");
        QCOMPARE(g.verdict, Verdict::depends_on_size);
        QCOMPARE(g.value, 75.0);

        // Muon reaches AdamW's final loss at step 50 of 100: 100% faster.
        auto race = [](double muon_at_50) {
            std::vector<Row> r;
            for (double s : {0.0, 50.0, 100.0}) {
                r.push_back(row("optimizers", "adamw", "step", s, {{"bpb", 8.0 - 0.03 * s, "bits/byte"}}, {{"seed", "1"}}));
                r.push_back(row("optimizers", "muon", "step", s,
                                {{"bpb", s == 50 ? muon_at_50 : 8.0 - 0.035 * s, "bits/byte"}}, {{"seed", "1"}}));
            }
            return r;
        };
        const ClaimResult fast = claim(evaluate_claims(race(5.0)), "muon");
        QCOMPARE(fast.verdict, Verdict::holds);
        QVERIFY(std::abs(fast.value - 100.0) < 1e-9);
        QCOMPARE(claim(evaluate_claims(race(7.0)), "muon").verdict, Verdict::does_not_hold);

        // LoRA: rank 4 is 2000× fewer parameters and 10× less memory, rank 64 not.
        std::vector<Row> ft{row("finetune", "full", "rank", 0, {{"params", 2e7, ""}, {"bytes", 1e9, "bytes"}}),
                            row("finetune", "lora", "rank", 4, {{"params", 1e4, ""}, {"bytes", 1e8, "bytes"}}),
                            row("finetune", "lora", "rank", 64, {{"params", 1.6e5, ""}, {"bytes", 2e8, "bytes"}})};
        const ClaimResult l = claim(evaluate_claims(ft), "lora");
        QCOMPARE(l.verdict, Verdict::depends_on_size);
        QVERIFY2(l.turns_at.find("rank=4") != std::string::npos, l.turns_at.c_str());
        QCOMPARE(l.value, 2000.0);

        // KV cache: recompute's time per token grows ∝ n, the cache's stays flat.
        std::vector<Row> kv;
        for (double n : {64.0, 128.0, 256.0, 512.0}) {
            kv.push_back(row("kv_cache", "kv_cache", "length", n, {{"tok_s", 1000.0, "tok/s"}}));
            kv.push_back(row("kv_cache", "recompute", "length", n, {{"tok_s", 64000.0 / n, "tok/s"}}));
        }
        const ClaimResult k = claim(evaluate_claims(kv), "kv_cache");
        QCOMPARE(k.verdict, Verdict::depends_on_size);   // recompute is faster at 64 (1000 vs 1000: not faster)
        QVERIFY2(k.turns_at.find("128") != std::string::npos, k.turns_at.c_str());
        for (Row& r : kv)
            if (r.series == "recompute") r.y[0].value = 1000.0;   // flat as well: no O(n²)
        QCOMPARE(claim(evaluate_claims(kv), "kv_cache").verdict, Verdict::does_not_hold);
    }

    void claimsReadMeasuredRows()
    {
        CollectingSink sink;
        CancelToken cancel;
        QCOMPARE(run_suite("gqa", tiny_cpu(), sink, cancel), Outcome::completed);
        const ClaimResult g = claim(evaluate_claims(sink.rows), "gqa");
        QVERIFY(g.verdict != Verdict::not_measured);
        // The tiny model has 4 query heads: 4 → 1 kv-heads is 75% less cache, measured.
        QVERIFY2(std::abs(g.value - 75.0) < 1.0, g.measured.c_str());
    }
};

QTEST_GUILESS_MAIN(TestBenchSuites)
#include "tst_bench_suites.moc"
