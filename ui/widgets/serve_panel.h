// ServePanel: the Chat page's Serve switch.
//
// On, it puts the run chosen on the page behind the OpenAI API, as
// `crucible-cli serve` does (core/serve/http), on 127.0.0.1 and the port
// given; the address to give an OpenAI client appears beside the switch.
// The server loads its own copy of the model and runs on its own threads, so
// chatting on the page goes on beside it and the GUI never waits for it.
// Off (or a different run chosen), the server stops and its generations end.
// A port already taken or a model that fails to load turns the switch back
// off with the reason.
#pragma once

#include <QPointer>
#include <QString>
#include <QWidget>

#include <functional>
#include <memory>

class QCheckBox;
class QLabel;
class QSpinBox;

namespace crucible::ui {

class ServePanel : public QWidget {
    Q_OBJECT
public:
    // What to serve: a run or checkpoint folder, and a device ("cpu", "cuda:N").
    struct Source {
        QString path, device;
    };

    explicit ServePanel(QWidget* parent = nullptr);
    ~ServePanel() override;   // stops the server

    void setSource(std::function<Source()> source) { m_source = std::move(source); }

    QCheckBox* toggle() const { return m_toggle; }
    QSpinBox* portBox() const { return m_port; }
    QLabel* status() const { return m_status; }
    // The API's base URL while serving; empty otherwise.
    QString url() const { return m_url; }
    bool serving() const { return !m_url.isEmpty(); }

public slots:
    void stop();

signals:
    void servingChanged(bool on);

private:
    struct Server;
    void start();
    // Stops the server (if any) and forgets it; the switch is left as it is.
    void shutdown();
    void started(const QString& url);
    void failed(const QString& message);

    std::function<Source()> m_source;
    QCheckBox* m_toggle = nullptr;
    QSpinBox* m_port = nullptr;
    QLabel* m_status = nullptr;
    QString m_url;
    std::unique_ptr<Server> m_server;
};

} // namespace crucible::ui
