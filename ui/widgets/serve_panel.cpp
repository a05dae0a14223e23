#include "ui/widgets/serve_panel.h"

#include "core/serve/http/openai_server.h"
#include "core/train/load_model.h"

#include <QCheckBox>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMetaObject>
#include <QSignalBlocker>
#include <QSpinBox>

#include <mutex>
#include <thread>

namespace crucible::ui {

namespace {

BackendOptions backend_for(const QString& device)
{
    BackendOptions o;
    if (device.startsWith(QLatin1String("cuda"))) {
        o.device = DeviceKind::cuda;
        const int colon = device.indexOf(QLatin1Char(':'));
        if (colon > 0) o.cuda_device = device.mid(colon + 1).toInt();
    }
    return o;
}

} // namespace

// One server: its model, engine and HTTP front, built and run on `thread`.
// The panel talks to it under `mutex`; it reports back through queued calls
// while `panel` is set (stop() clears it, so nothing arrives afterwards).
struct ServePanel::Server {
    std::mutex mutex;
    ServePanel* panel = nullptr;
    bool stopping = false;
    // Destroyed in reverse: the HTTP front first, the model last.
    std::unique_ptr<LoadedModel> model;
    std::unique_ptr<serve::ServedModel> served;
    serve::ServeMetrics metrics;
    std::unique_ptr<serve::BatchEngine> engine;
    std::unique_ptr<serve::OpenAiServer> http;
    std::thread thread;

    template <class F>
    void post(F f)
    {
        std::lock_guard lock(mutex);
        if (panel) QMetaObject::invokeMethod(panel, [p = panel, f] { f(*p); }, Qt::QueuedConnection);
    }

    void run(const Source& source, int port)
    {
        try {
            auto m = std::make_unique<LoadedModel>(load_model(source.path.toStdString(), backend_for(source.device)));
            std::string name = QFileInfo(source.path).fileName().toStdString();
            if (name.empty()) name = "crucible";
            int bound = 0;
            {
                std::lock_guard lock(mutex);
                if (stopping) return;
                model = std::move(m);
                served = std::make_unique<serve::ServedModel>(name, model->tokenizer, model->config.seq_len,
                                                              model->tokenizer_config);
                engine = std::make_unique<serve::BatchEngine>(*model->params, model->tokenizer, 8,
                                                              model->config.seq_len, &metrics);
                serve::ServerOptions o;
                o.port = port;
                http = std::make_unique<serve::OpenAiServer>(*served, *engine, metrics, o);
                bound = http->bind();
            }
            const QString url = QStringLiteral("http://127.0.0.1:%1/v1").arg(bound);
            const QString model_name = QString::fromStdString(name);
            post([url, model_name](ServePanel& p) { p.started(url + QStringLiteral(" · model \"%1\"").arg(model_name)); });
            http->listen();
        } catch (const std::exception& e) {
            const QString message = QString::fromUtf8(e.what());
            post([message](ServePanel& p) { p.failed(message); });
        }
    }
};

ServePanel::ServePanel(QWidget* parent) : QWidget(parent)
{
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(0, 0, 0, 0);
    m_toggle = new QCheckBox(tr("Serve on port"), this);
    m_toggle->setObjectName(QStringLiteral("serveToggle"));
    m_toggle->setToolTip(tr("Serve the chosen run over the OpenAI API on this computer (127.0.0.1), as "
                            "`crucible-cli serve` does: any OpenAI client can use it with the address shown. "
                            "The server loads its own copy of the model."));
    m_port = new QSpinBox(this);
    m_port->setObjectName(QStringLiteral("servePort"));
    m_port->setRange(0, 65535);
    m_port->setValue(8080);
    m_port->setToolTip(tr("TCP port (0: any free one)"));
    m_status = new QLabel(this);
    m_status->setObjectName(QStringLiteral("serveStatus"));
    m_status->setProperty("role", "subtitle");
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    row->addWidget(m_toggle);
    row->addWidget(m_port);
    row->addWidget(m_status);
    connect(m_toggle, &QCheckBox::toggled, this, [this](bool on) {
        if (on) start();
        else stop();
    });
}

ServePanel::~ServePanel() { stop(); }

void ServePanel::start()
{
    shutdown();
    m_status->setProperty("failed", false);
    const Source source = m_source ? m_source() : Source{};
    if (source.path.isEmpty()) return failed(tr("choose a run to serve first."));
    m_port->setEnabled(false);
    m_status->setText(tr("Loading…"));
    m_server = std::make_unique<Server>();
    m_server->panel = this;
    Server* s = m_server.get();
    const int port = m_port->value();
    s->thread = std::thread([s, source, port] { s->run(source, port); });
}

void ServePanel::stop()
{
    shutdown();
    if (!m_status->property("failed").toBool()) m_status->clear();
    m_status->setProperty("failed", false);
    const QSignalBlocker block(m_toggle);
    m_toggle->setChecked(false);
}

void ServePanel::shutdown()
{
    const bool was_serving = serving();
    m_url.clear();
    if (m_server) {
        bool loaded = false;
        {
            std::lock_guard lock(m_server->mutex);
            m_server->panel = nullptr;
            m_server->stopping = true;
            loaded = m_server->engine != nullptr;
            // The running generations end, then the HTTP threads.
            if (m_server->engine) m_server->engine->stop();
            if (m_server->http) m_server->http->stop();
        }
        if (loaded) {
            m_server->thread.join();
            m_server.reset();
        } else {
            // Still loading the model, which cannot be interrupted: it is
            // dropped when it arrives, without the page waiting for it.
            std::thread([s = std::shared_ptr<Server>(std::move(m_server))] { s->thread.join(); }).detach();
        }
    }
    m_port->setEnabled(true);
    if (was_serving) emit servingChanged(false);
}

void ServePanel::started(const QString& text)
{
    m_url = text.section(QLatin1Char(' '), 0, 0);
    m_status->setText(text);
    m_status->setToolTip(tr("Base URL for OpenAI clients; also /health and /metrics"));
    emit servingChanged(true);
}

void ServePanel::failed(const QString& message)
{
    stop();
    m_status->setText(tr("Not serving: %1").arg(message));
    m_status->setToolTip(message);
    m_status->setProperty("failed", true);
}

} // namespace crucible::ui
