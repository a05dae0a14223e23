// The Chat page's Serve switch: on, the chosen run answers the OpenAI API at
// the address it shows (health, models, a chat completion over HTTP) while
// the GUI stays responsive; off, the port closes; a port already taken and
// a missing run turn the switch back off with the reason. The Chat page
// carries the switch.
#ifdef CRUCIBLE_HAS_SERVER
#include "core/io/file_util.h"
#include "core/train/hf_import.h"
#include "tests/support/http_client.h"
#include "tests/support/tiny_hf_model.h"
#include "tests/ui/ui_test_support.h"
#include "ui/widgets/serve_panel.h"

#include <QCheckBox>
#include <QLabel>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTest>

#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

using namespace crucible;
using namespace crucible::ui;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kTimeoutMs = 60'000;

int port_of(const QString& url) { return url.section(QLatin1Char(':'), 2).section(QLatin1Char('/'), 0, 0).toInt(); }

} // namespace

class TestServePanel : public QObject {
    Q_OBJECT

private:
    test::IsolatedEnvironment m_env;
    QString m_run;

private slots:
    void initTestCase()
    {
        const fs::path root = m_env.path(QStringLiteral("models")).toStdString();
        test::write_tiny_hf_model(root / "hf", test::TinyHfModel{});
        m_run = QString::fromStdString((root / "tiny-chat").string());
        import_hf_model(root / "hf", m_run.toStdString(), RunConfig{});
    }

    void servesTheChosenRun()
    {
        ServePanel panel;
        panel.setSource([&] { return ServePanel::Source{m_run, QStringLiteral("cpu")}; });
        panel.portBox()->setValue(0);   // any free port
        panel.show();
        QSignalSpy changed(&panel, &ServePanel::servingChanged);
        panel.toggle()->click();
        QVERIFY(panel.toggle()->isChecked());
        QVERIFY(!panel.portBox()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(panel.serving(), kTimeoutMs);
        QVERIFY(panel.toggle()->isChecked());
        QCOMPARE(changed.count(), 1);
        const QString url = panel.url();
        QVERIFY2(url.startsWith(QStringLiteral("http://127.0.0.1:")) && url.endsWith(QStringLiteral("/v1")),
                 qPrintable(url));
        QVERIFY(panel.status()->text().contains(QStringLiteral("tiny-chat")));
        const int port = port_of(url);

        QCOMPARE(test::http_request(port, "GET", "/health").status, 200);
        const auto models = test::http_request(port, "GET", "/v1/models");
        QCOMPARE(json::parse(models.body)["data"][0]["id"].get<std::string>(), std::string("tiny-chat"));
        const auto reply = test::http_request(
            port, "POST", "/v1/chat/completions",
            json{{"model", "tiny-chat"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 5}}.dump());
        QCOMPARE(reply.status, 200);
        QCOMPARE(json::parse(reply.body)["usage"]["completion_tokens"].get<int>(), 5);

        panel.toggle()->click();
        QVERIFY(!panel.serving());
        QCOMPARE(changed.count(), 2);
        QVERIFY(panel.portBox()->isEnabled());
        QCOMPARE(test::http_request(port, "GET", "/health").status, 0);   // nobody listens
    }

    void aTakenPortIsReported()
    {
        // Hold a port.
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        QCOMPARE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        QCOMPARE(listen(fd, 1), 0);
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);

        ServePanel panel;
        panel.setSource([&] { return ServePanel::Source{m_run, QStringLiteral("cpu")}; });
        panel.portBox()->setValue(ntohs(a.sin_port));
        panel.toggle()->click();
        QTRY_VERIFY_WITH_TIMEOUT(!panel.toggle()->isChecked(), kTimeoutMs);
        QVERIFY(!panel.serving());
        QVERIFY2(panel.status()->text().contains(QStringLiteral("port")), qPrintable(panel.status()->text()));
        close(fd);

        // A run that is not there.
        panel.setSource([] { return ServePanel::Source{QStringLiteral("/nonexistent/run"), QStringLiteral("cpu")}; });
        panel.portBox()->setValue(0);
        panel.toggle()->click();
        QTRY_VERIFY_WITH_TIMEOUT(!panel.toggle()->isChecked(), kTimeoutMs);
        QVERIFY(panel.status()->text().startsWith(QStringLiteral("Not serving")));
        // Nothing chosen.
        panel.setSource([] { return ServePanel::Source{}; });
        panel.toggle()->click();
        QVERIFY(!panel.toggle()->isChecked());
        QVERIFY(!panel.status()->text().isEmpty());
    }

    void stoppingWhileLoadingNeverWaits()
    {
        ServePanel panel;
        panel.setSource([&] { return ServePanel::Source{m_run, QStringLiteral("cpu")}; });
        panel.portBox()->setValue(0);
        panel.toggle()->click();
        panel.toggle()->click();   // at once, before the model is in
        QVERIFY(!panel.serving());
        QVERIFY(!panel.toggle()->isChecked());
        QTest::qWait(200);         // a late report from the loading thread changes nothing
        QVERIFY(!panel.serving());
    }

    void theChatPageCarriesTheSwitch()
    {
        test::AppUnderTest app;
        QVERIFY(app.exposed());
        auto* toggle = app.window->findChild<QCheckBox*>(QStringLiteral("serveToggle"));
        QVERIFY(toggle);
        auto* panel = app.window->findChild<ServePanel*>();
        QVERIFY(panel);
        panel->setSource([&] { return ServePanel::Source{m_run, QStringLiteral("cpu")}; });
        panel->portBox()->setValue(0);
        toggle->click();
        QTRY_VERIFY_WITH_TIMEOUT(panel->serving(), kTimeoutMs);
        QVERIFY(toggle->isChecked());
    }
};

#else
// Built without cpp-httplib: the app has no Serve switch.
#include <QTest>

class TestServePanel : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QSKIP("built without cpp-httplib: the Chat page has no Serve switch"); }
};
#endif

QTEST_MAIN(TestServePanel)
#include "tst_serve_panel.moc"
