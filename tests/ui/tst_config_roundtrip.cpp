// Every page reads from and writes to one RunConfig: values typed into the
// Model, Data and Train pages come out in the config JSON exactly, loading
// that JSON puts them back into the widgets, and opening a run on the Runs
// page loads its config.json into all pages.
#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/charts/live_chart.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/data_page.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/train_page.h"
#include "ui/widgets/number_box.h"
#include "tests/ui/ui_test_support.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTest>
#include <QTreeWidget>

#include <fstream>

using namespace crucible;
using namespace crucible::ui;

class TestConfigRoundTrip : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    template <class T>
    T* find(const char* name) { return m_app->find<T>(name); }
    void spin(const char* name, int v) { test::typeInto(find<QSpinBox>(name), QString::number(v)); }
    void number(const char* name, const QString& v) { test::typeInto(find<NumberBox>(name), v); }
    void check(const char* name, bool on)
    {
        auto* box = find<QCheckBox>(name);
        if (box->isChecked() != on) QTest::mouseClick(box, Qt::LeftButton, {}, QPoint(8, box->height() / 2));
    }
    void combo(const char* name, const char* data) { QVERIFY(test::chooseInCombo(find<QComboBox>(name), QString::fromLatin1(data))); }

    // What the widgets show, read back into a config, to compare with the model.
    void verifyWidgetsShow(const RunConfig& c)
    {
        const ModelConfig& m = c.model;
        QCOMPARE(find<QSpinBox>("vocabSpin")->value(), m.vocab_size);
        QCOMPARE(find<QSpinBox>("dModelSpin")->value(), m.d_model);
        QCOMPARE(find<QSpinBox>("layersSpin")->value(), m.n_layers);
        QCOMPARE(find<QSpinBox>("headsSpin")->value(), m.n_heads);
        QCOMPARE(find<QSpinBox>("kvHeadsSpin")->value(), m.n_kv_heads);
        QCOMPARE(find<QSpinBox>("ffSpin")->value(), m.ff_dim);
        QCOMPARE(find<QSpinBox>("seqSpin")->value(), m.seq_len);
        QCOMPARE(float(find<NumberBox>("ropeThetaBox")->value()), m.rope_theta);
        QCOMPARE(find<QComboBox>("normCombo")->currentData().toString(), QString::fromLatin1(to_string(m.norm)));
        QCOMPARE(find<QComboBox>("mlpCombo")->currentData().toString(), QString::fromLatin1(to_string(m.mlp)));
        QCOMPARE(find<QCheckBox>("qkNormCheck")->isChecked(), m.qk_norm);
        QCOMPARE(find<QCheckBox>("tiedCheck")->isChecked(), m.tied_embeddings);
        QCOMPARE(find<QSpinBox>("dataVocabSpin")->value(), m.vocab_size);
        QCOMPARE(find<QDoubleSpinBox>("valFractionSpin")->value(), c.data.val_fraction);
        const TrainConfig& t = c.train;
        QCOMPARE(find<QComboBox>("optimizerCombo")->currentData().toString(), QString::fromLatin1(to_string(t.optimizer.type)));
        QCOMPARE(float(find<NumberBox>("lrBox")->value()), t.optimizer.lr);
        QCOMPARE(float(find<NumberBox>("epsBox")->value()), t.optimizer.eps);
        QCOMPARE(float(find<NumberBox>("muonLrBox")->value()), t.optimizer.muon_lr);
        QCOMPARE(find<QCheckBox>("muonNesterovCheck")->isChecked(), t.optimizer.muon_nesterov);
        QCOMPARE(find<QComboBox>("scheduleCombo")->currentData().toString(), QString::fromLatin1(to_string(t.schedule.kind)));
        QCOMPARE(find<QSpinBox>("warmupSpin")->value(), t.schedule.warmup_steps);
        QCOMPARE(float(find<NumberBox>("decayFractionBox")->value()), t.schedule.decay_fraction);
        QCOMPARE(find<QSpinBox>("stepsSpin")->value(), t.steps);
        QCOMPARE(find<QSpinBox>("batchSpin")->value(), t.batch_size);
        QCOMPARE(find<QSpinBox>("accumSpin")->value(), t.grad_accum);
        QCOMPARE(find<QSpinBox>("trainSeqSpin")->value(), t.seq_len);
        QCOMPARE(find<QSpinBox>("evalEverySpin")->value(), t.eval_every);
        QCOMPARE(find<QSpinBox>("evalBatchesSpin")->value(), t.eval_batches);
        QCOMPARE(find<QSpinBox>("checkpointEverySpin")->value(), t.checkpoint_every);
        QCOMPARE(find<QSpinBox>("sampleEverySpin")->value(), t.sample_every);
        QCOMPARE(find<QSpinBox>("sampleTokensSpin")->value(), t.sample_tokens);
        QCOMPARE(find<QLineEdit>("samplePromptEdit")->text(), QString::fromStdString(t.sample_prompt).replace(QLatin1Char('\n'), QStringLiteral("\\n")));
        QCOMPARE(float(find<NumberBox>("temperatureBox")->value()), t.sample_temperature);
        QCOMPARE(find<QSpinBox>("threadsSpin")->value(), t.threads);
        QCOMPARE(find<QLineEdit>("seedEdit")->text(), QString::number(qulonglong(t.seed)));
    }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
    }

    void pagesWriteOneConfigThatRoundTrips()
    {
        // Model page
        m_app->window->showPage(QStringLiteral("Model"));
        spin("dModelSpin", 96);
        spin("layersSpin", 3);
        spin("headsSpin", 6);
        spin("kvHeadsSpin", 3);
        spin("ffSpin", 200);
        spin("seqSpin", 64);
        number("ropeThetaBox", QStringLiteral("500000"));
        combo("normCombo", "layernorm");
        combo("mlpCombo", "gelu");
        check("qkNormCheck", true);
        check("tiedCheck", false);
        // Data page
        m_app->window->showPage(QStringLiteral("Data"));
        const QString text = m_app->env.path(QStringLiteral("notes.txt"));
        std::ofstream(text.toStdString()) << "some text of my own\n";
        m_app->window->page<DataPage>()->addPaths({text});
        test::typeInto(find<QDoubleSpinBox>("valFractionSpin"), QStringLiteral("0.2"));
        spin("dataVocabSpin", 1000);
        // Train page
        m_app->window->showPage(QStringLiteral("Train"));
        combo("optimizerCombo", "muon");
        number("lrBox", QStringLiteral("3e-4"));
        number("epsBox", QStringLiteral("1e-7"));
        number("muonLrBox", QStringLiteral("0.03"));
        check("muonNesterovCheck", false);
        combo("scheduleCombo", "wsd");
        spin("warmupSpin", 7);
        number("decayFractionBox", QStringLiteral("0.3"));
        spin("stepsSpin", 123);
        spin("batchSpin", 3);
        spin("accumSpin", 2);
        spin("trainSeqSpin", 48);
        spin("evalEverySpin", 10);
        spin("evalBatchesSpin", 2);
        spin("checkpointEverySpin", 50);
        spin("sampleEverySpin", 20);
        spin("sampleTokensSpin", 33);
        test::typeInto(find<QLineEdit>("samplePromptEdit"), QStringLiteral("ROMEO:\\n"));
        number("temperatureBox", QStringLiteral("0.5"));
        spin("threadsSpin", 1);
        test::typeInto(find<QLineEdit>("seedEdit"), QStringLiteral("42"));

        const RunConfig& c = m_app->context->config()->config();
        QCOMPARE(c.model.d_model, 96);
        QCOMPARE(c.model.n_layers, 3);
        QCOMPARE(c.model.n_heads, 6);
        QCOMPARE(c.model.n_kv_heads, 3);
        QCOMPARE(c.model.ff_dim, 200);
        QCOMPARE(c.model.seq_len, 64);
        QCOMPARE(c.model.rope_theta, 500000.0f);
        QVERIFY(c.model.norm == NormType::layernorm);
        QVERIFY(c.model.mlp == MlpType::gelu);
        QVERIFY(c.model.qk_norm);
        QVERIFY(!c.model.tied_embeddings);
        QCOMPARE(c.model.vocab_size, 1000);
        QCOMPARE(c.model.name, std::string("custom"));
        QCOMPARE(c.data.paths, std::vector<std::string>{QFileInfo(text).absoluteFilePath().toStdString()});
        QCOMPARE(c.data.val_fraction, 0.2);
        QVERIFY(c.train.optimizer.type == OptimizerType::muon);
        QCOMPARE(c.train.optimizer.lr, 3e-4f);
        QCOMPARE(c.train.optimizer.eps, 1e-7f);
        QCOMPARE(c.train.optimizer.muon_lr, 0.03f);
        QVERIFY(!c.train.optimizer.muon_nesterov);
        QVERIFY(c.train.schedule.kind == ScheduleKind::wsd);
        QCOMPARE(c.train.schedule.warmup_steps, 7);
        QCOMPARE(c.train.schedule.decay_fraction, 0.3f);
        QCOMPARE(c.train.steps, 123);
        QCOMPARE(c.train.batch_size, 3);
        QCOMPARE(c.train.grad_accum, 2);
        QCOMPARE(c.train.seq_len, 48);
        QCOMPARE(c.train.eval_every, 10);
        QCOMPARE(c.train.eval_batches, 2);
        QCOMPARE(c.train.checkpoint_every, 50);
        QCOMPARE(c.train.sample_every, 20);
        QCOMPARE(c.train.sample_tokens, 33);
        QCOMPARE(c.train.sample_prompt, std::string("ROMEO:\n"));
        QCOMPARE(c.train.sample_temperature, 0.5f);
        QCOMPARE(c.train.threads, 1);
        QCOMPARE(c.train.seed, uint64_t(42));
        const auto problems = c.problems();
        QVERIFY2(problems.empty(), problems.empty() ? "" : problems.front().c_str());

        // Through JSON and back: identical, and shown again after a reset.
        const QByteArray json = m_app->context->config()->toJson();
        const RunConfig parsed = run_config_from_json(nlohmann::json::parse(json.toStdString()));
        QCOMPARE(to_json(parsed).dump(), to_json(c).dump());
        m_app->context->config()->setConfig(RunConfig{preset("nano"), TrainConfig{}, DataConfig{}});
        verifyWidgetsShow(m_app->context->config()->config());
        QString error;
        QVERIFY2(m_app->context->config()->loadJson(json, &error), qPrintable(error));
        QCOMPARE(m_app->context->config()->toJson(), json);
        verifyWidgetsShow(parsed);
    }

    void openingARunLoadsItsConfigIntoThePages()
    {
        RunConfig c;
        c.model = preset("micro");
        c.model.name = "my-experiment";
        c.model.qk_norm = true;
        c.train.optimizer.type = OptimizerType::muon;
        c.train.optimizer.muon_lr = 0.015f;
        c.train.steps = 777;
        c.train.batch_size = 5;
        c.train.sample_prompt = "JULIET:\n";
        c.data.val_fraction = 0.05;
        const std::filesystem::path root = std::filesystem::path(m_app->env.runsDir().toStdString()) / "opened-run";
        std::filesystem::create_directories(root);
        RunDirectory(root).write_config(c);
        std::ofstream(root / "metrics.jsonl")
            << R"({"type":"start","step":0,"device":"CPU","parameters":1})" "\n"
            << R"({"type":"step","step":1,"loss":7.5,"lr":0.001,"grad_norm":1.0,"tokens_per_s":1000,"mfu":0.1,"memory_bytes":100,"elapsed_s":0.5,"tokens_seen":100})" "\n"
            << R"({"type":"step","step":2,"loss":7.0,"lr":0.001,"grad_norm":1.0,"tokens_per_s":1000,"mfu":0.1,"memory_bytes":100,"elapsed_s":1.0,"tokens_seen":200})" "\n";

        m_app->window->showPage(QStringLiteral("Runs"));
        auto* runs = m_app->window->page<RunsPage>();
        runs->refresh();
        QTRY_VERIFY_WITH_TIMEOUT(!runs->scanning(), 30000);   // runs are scanned on a worker thread
        QTreeWidgetItem* item = runs->itemFor(QString::fromStdString(root.string()));
        QVERIFY(item);
        runs->table()->setCurrentItem(item);
        QTest::mouseClick(find<QPushButton>("openRunButton"), Qt::LeftButton);

        QCOMPARE(to_json(m_app->context->config()->config()).dump(), to_json(c).dump());
        QCOMPARE(m_app->context->currentRun(), QString::fromStdString(root.string()));
        QCOMPARE(m_app->window->currentPage(), QStringLiteral("Train"));
        verifyWidgetsShow(c);
        // The Train page shows the run's history.
        QCOMPARE(m_app->window->page<TrainPage>()->lossChart()->pointCount(0), size_t(2));
    }
};

QTEST_MAIN(TestConfigRoundTrip)
#include "tst_config_roundtrip.moc"
