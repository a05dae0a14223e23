#include "ui/pages/train_settings.h"

#include "kernels/backend_factory.h"
#include "ui/app_context.h"
#include "ui/charts/live_chart.h"
#include "ui/format.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/number_box.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QRegularExpressionValidator>
#include <QSettings>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QVBoxLayout>

#include <algorithm>

namespace crucible::ui {

QString escapeControl(const QString& text)
{
    QString out;
    for (const QChar c : text) {
        if (c == QLatin1Char('\\')) out += QStringLiteral("\\\\");
        else if (c == QLatin1Char('\n')) out += QStringLiteral("\\n");
        else if (c == QLatin1Char('\t')) out += QStringLiteral("\\t");
        else out += c;
    }
    return out;
}

QString unescapeControl(const QString& text)
{
    QString out;
    for (qsizetype i = 0; i < text.size(); ++i) {
        const QChar c = text[i];
        if (c == QLatin1Char('\\') && i + 1 < text.size()) {
            const QChar n = text[i + 1];
            if (n == QLatin1Char('n')) { out += QLatin1Char('\n'); ++i; continue; }
            if (n == QLatin1Char('t')) { out += QLatin1Char('\t'); ++i; continue; }
            if (n == QLatin1Char('\\')) { out += QLatin1Char('\\'); ++i; continue; }
        }
        out += c;
    }
    return out;
}

namespace {

QFormLayout* formIn(QGroupBox* box)
{
    auto* f = new QFormLayout(box);
    f->setLabelAlignment(Qt::AlignRight);
    f->setFieldGrowthPolicy(QFormLayout::ExpandingFieldsGrow);
    return f;
}

} // namespace

TrainSettings::TrainSettings(AppContext& context, QWidget* parent) : QWidget(parent), m_context(context)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 6, 0);
    layout->addWidget(buildOptimizer());
    layout->addWidget(buildSchedule());
    layout->addWidget(buildBatch());
    layout->addWidget(buildCadence());
    layout->addWidget(buildDevice());
    layout->addStretch(1);

    connect(context.config(), &RunConfigModel::configChanged, this, [this] {
        if (!m_loading) loadFromConfig();
        updateDerived();
    });
    connect(context.devices(), &DeviceInventory::changed, this, &TrainSettings::updateDevices);
    updateDevices();
    loadFromConfig();
    updateDerived();
}

QWidget* TrainSettings::buildOptimizer()
{
    auto* box = new QGroupBox(tr("Optimizer"));
    auto* f = formIn(box);
    m_optimizer = new QComboBox(box);
    m_optimizer->setObjectName(QStringLiteral("optimizerCombo"));
    m_optimizer->addItem(QStringLiteral("AdamW"), QStringLiteral("adamw"));
    m_optimizer->addItem(tr("Muon (hidden matrices) + AdamW"), QStringLiteral("muon"));
    m_optimizer->setToolTip(tr("Muon orthogonalises the update of each attention and MLP matrix (Newton–Schulz); "
                               "embeddings, head and norms stay on AdamW"));
    m_lr = makeNumber(box, "lrBox", 0.0, 10.0, tr("Peak AdamW learning rate (arrows halve and double it)"), true);
    m_beta1 = makeNumber(box, "beta1Box", 0.0, 1.0, tr("AdamW first-moment decay"));
    m_beta2 = makeNumber(box, "beta2Box", 0.0, 1.0, tr("AdamW second-moment decay"));
    m_eps = makeNumber(box, "epsBox", 0.0, 1.0, tr("AdamW denominator epsilon"), true);
    m_weightDecay = makeNumber(box, "weightDecayBox", 0.0, 10.0, tr("Decoupled weight decay on matrices (norms never decay)"));
    m_gradClip = makeNumber(box, "gradClipBox", 0.0, 1e6, tr("Global gradient-norm clip; 0 turns clipping off"));
    f->addRow(tr("Optimizer"), m_optimizer);
    f->addRow(tr("Learning rate"), m_lr);
    f->addRow(tr("β₁"), m_beta1);
    f->addRow(tr("β₂"), m_beta2);
    f->addRow(tr("ε"), m_eps);
    f->addRow(tr("Weight decay"), m_weightDecay);
    f->addRow(tr("Gradient clip"), m_gradClip);

    m_muonBox = new QGroupBox(tr("Muon"), box);
    m_muonBox->setObjectName(QStringLiteral("muonBox"));
    m_muonBox->setStyleSheet(QStringLiteral("QGroupBox { background: #fafbfc; }"));
    auto* m = formIn(m_muonBox);
    m_muonLr = makeNumber(m_muonBox, "muonLrBox", 0.0, 10.0, tr("Learning rate of the hidden matrices"), true);
    m_muonMomentum = makeNumber(m_muonBox, "muonMomentumBox", 0.0, 1.0, tr("Momentum of the matrix updates"));
    m_muonNesterov = new QCheckBox(tr("Nesterov momentum"), m_muonBox);
    m_muonNesterov->setObjectName(QStringLiteral("muonNesterovCheck"));
    m_muonNs = makeSpin(m_muonBox, "muonNsSpin", 0, 20, tr("Newton–Schulz iterations that orthogonalise each update"));
    m_muonWd = makeNumber(m_muonBox, "muonWdBox", 0.0, 10.0, tr("Decoupled weight decay of the matrices"));
    m_muonMatch = new QCheckBox(tr("Match AdamW's update size (one learning rate)"), m_muonBox);
    m_muonMatch->setObjectName(QStringLiteral("muonMatchCheck"));
    m_muonMatch->setToolTip(tr("Scale Muon's updates to AdamW's RMS (0.2·√max(rows, cols)) and use the AdamW rate"));
    m->addRow(tr("Learning rate"), m_muonLr);
    m->addRow(tr("Momentum"), m_muonMomentum);
    m->addRow(QString(), m_muonNesterov);
    m->addRow(tr("NS steps"), m_muonNs);
    m->addRow(tr("Weight decay"), m_muonWd);
    m->addRow(QString(), m_muonMatch);
    f->addRow(m_muonBox);

    connect(m_optimizer, &QComboBox::currentIndexChanged, this, [this] {
        const bool muon = m_optimizer->currentData().toString() == QLatin1String("muon");
        edit([&](TrainConfig& t) { t.optimizer.type = muon ? OptimizerType::muon : OptimizerType::adamw; });
    });
    auto bind = [this](NumberBox* box, float OptimizerConfig::*field) {
        connect(box, &NumberBox::valueChanged, this,
                [this, field](double v) { edit([&](TrainConfig& t) { t.optimizer.*field = float(v); }); });
    };
    bind(m_lr, &OptimizerConfig::lr);
    bind(m_beta1, &OptimizerConfig::beta1);
    bind(m_beta2, &OptimizerConfig::beta2);
    bind(m_eps, &OptimizerConfig::eps);
    bind(m_weightDecay, &OptimizerConfig::weight_decay);
    bind(m_gradClip, &OptimizerConfig::grad_clip);
    bind(m_muonLr, &OptimizerConfig::muon_lr);
    bind(m_muonMomentum, &OptimizerConfig::muon_momentum);
    bind(m_muonWd, &OptimizerConfig::muon_weight_decay);
    connect(m_muonNesterov, &QCheckBox::toggled, this,
            [this](bool on) { edit([&](TrainConfig& t) { t.optimizer.muon_nesterov = on; }); });
    connect(m_muonMatch, &QCheckBox::toggled, this,
            [this](bool on) { edit([&](TrainConfig& t) { t.optimizer.muon_match_adamw_rms = on; }); });
    connect(m_muonNs, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.optimizer.muon_ns_steps = v; }); });
    return box;
}

QWidget* TrainSettings::buildSchedule()
{
    auto* box = new QGroupBox(tr("Learning-rate schedule"));
    auto* f = formIn(box);
    m_schedule = new QComboBox(box);
    m_schedule->setObjectName(QStringLiteral("scheduleCombo"));
    m_schedule->addItem(tr("Warmup, then cosine decay"), QStringLiteral("cosine"));
    m_schedule->addItem(tr("Warmup, stable, decay (WSD)"), QStringLiteral("wsd"));
    m_schedule->addItem(tr("Warmup, then constant"), QStringLiteral("constant"));
    m_warmup = makeSpin(box, "warmupSpin", 0, 1 << 30, tr("Steps of linear warmup from zero"));
    m_minLr = makeNumber(box, "minLrBox", 0.0, 1.0, tr("Where the decay ends, as a fraction of the peak rate"));
    m_decayFraction = makeNumber(box, "decayFractionBox", 0.0, 1.0, tr("WSD: the share of the run spent decaying"));
    m_decayLabel = new QLabel(tr("Decay share"), box);
    m_preview = new LiveChart(tr("Learning rate over the run"), box);
    m_preview->setObjectName(QStringLiteral("schedulePreview"));
    m_preview->setMinimumHeight(150);
    m_preview->setMaximumHeight(170);
    m_preview->addSeries(tr("learning rate"), theme::accent());
    m_preview->setValueFormatter([](double v) { return formatNumber(v, 3); });
    f->addRow(tr("Schedule"), m_schedule);
    f->addRow(tr("Warmup steps"), m_warmup);
    f->addRow(tr("Floor"), m_minLr);
    f->addRow(m_decayLabel, m_decayFraction);
    f->addRow(m_preview);

    connect(m_schedule, &QComboBox::currentIndexChanged, this, [this] {
        const ScheduleKind k = schedule_kind_from_string(m_schedule->currentData().toString().toStdString());
        edit([&](TrainConfig& t) { t.schedule.kind = k; });
    });
    connect(m_warmup, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.schedule.warmup_steps = v; }); });
    connect(m_minLr, &NumberBox::valueChanged, this,
            [this](double v) { edit([&](TrainConfig& t) { t.schedule.min_lr_ratio = float(v); }); });
    connect(m_decayFraction, &NumberBox::valueChanged, this,
            [this](double v) { edit([&](TrainConfig& t) { t.schedule.decay_fraction = float(v); }); });
    return box;
}

QWidget* TrainSettings::buildBatch()
{
    auto* box = new QGroupBox(tr("Batch and length"));
    auto* f = formIn(box);
    m_steps = makeSpin(box, "stepsSpin", 0, 100'000'000, tr("Optimizer steps in the run"));
    m_batch = makeSpin(box, "batchSpin", 0, 65536, tr("Sequences per micro-batch: sets activation memory"));
    m_accum = makeSpin(box, "accumSpin", 0, 4096, tr("Micro-batches summed into one optimizer step"));
    m_seqLen = makeSpin(box, "trainSeqSpin", 0, 131072, tr("Tokens per training sequence; at most the model's context"),
                        tr("model's context"));
    m_tokensPerStep = makeNote(QString(), box);
    m_tokensPerStep->setObjectName(QStringLiteral("tokensPerStep"));
    f->addRow(tr("Steps"), m_steps);
    f->addRow(tr("Batch size"), m_batch);
    f->addRow(tr("Accumulation"), m_accum);
    f->addRow(tr("Sequence"), m_seqLen);
    f->addRow(m_tokensPerStep);
    connect(m_steps, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.steps = v; }); });
    connect(m_batch, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.batch_size = v; }); });
    connect(m_accum, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.grad_accum = v; }); });
    connect(m_seqLen, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.seq_len = v; }); });
    return box;
}

QWidget* TrainSettings::buildCadence()
{
    auto* box = new QGroupBox(tr("Evaluation, samples and checkpoints"));
    auto* f = formIn(box);
    m_evalEvery = makeSpin(box, "evalEverySpin", 0, 1 << 30, tr("Validation loss every N steps (and at the end)"),
                           tr("only at the end"));
    m_evalBatches = makeSpin(box, "evalBatchesSpin", 0, 1 << 20, tr("Validation batches per evaluation"),
                             tr("whole split"));
    m_checkpointEvery = makeSpin(box, "checkpointEverySpin", 0, 1 << 30,
                                 tr("Checkpoint every N steps; one is always written at the end and on Stop"),
                                 tr("at the end and on stop"));
    m_sampleEvery = makeSpin(box, "sampleEverySpin", 0, 1 << 30, tr("Generate a text sample every N steps"),
                             tr("with each evaluation"));
    m_sampleTokens = makeSpin(box, "sampleTokensSpin", 0, 4096, tr("Tokens per text sample; 0 turns samples off"),
                              tr("no samples"));
    m_samplePrompt = new QLineEdit(box);
    m_samplePrompt->setObjectName(QStringLiteral("samplePromptEdit"));
    m_samplePrompt->setToolTip(tr("Text the samples continue; write \\n for a line break"));
    m_temperature = makeNumber(box, "temperatureBox", 0.0, 10.0, tr("Sampling temperature; 0 is greedy"));
    f->addRow(tr("Evaluate every"), m_evalEvery);
    f->addRow(tr("Eval batches"), m_evalBatches);
    f->addRow(tr("Checkpoint every"), m_checkpointEvery);
    f->addRow(tr("Sample every"), m_sampleEvery);
    f->addRow(tr("Sample length"), m_sampleTokens);
    f->addRow(tr("Sample prompt"), m_samplePrompt);
    f->addRow(tr("Temperature"), m_temperature);
    connect(m_evalEvery, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.eval_every = v; }); });
    connect(m_evalBatches, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.eval_batches = v; }); });
    connect(m_checkpointEvery, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.checkpoint_every = v; }); });
    connect(m_sampleEvery, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.sample_every = v; }); });
    connect(m_sampleTokens, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.sample_tokens = v; }); });
    connect(m_samplePrompt, &QLineEdit::editingFinished, this, [this] {
        const std::string prompt = unescapeControl(m_samplePrompt->text()).toStdString();
        edit([&](TrainConfig& t) { t.sample_prompt = prompt; });
    });
    connect(m_temperature, &NumberBox::valueChanged, this,
            [this](double v) { edit([&](TrainConfig& t) { t.sample_temperature = float(v); }); });
    return box;
}

QWidget* TrainSettings::buildDevice()
{
    auto* box = new QGroupBox(tr("Device"));
    auto* f = formIn(box);
    m_device = new QComboBox(box);
    m_device->setObjectName(QStringLiteral("deviceCombo"));
    m_device->addItem(tr("CPU"), QStringLiteral("cpu"));
    m_device->addItem(tr("CUDA GPU"), QStringLiteral("cuda"));
    m_deviceNote = makeNote(QString(), box);
    m_deviceNote->setObjectName(QStringLiteral("deviceNote"));
    m_gpuList = new QWidget(box);
    m_gpuList->setObjectName(QStringLiteral("gpuList"));
    auto* gpuLayout = new QVBoxLayout(m_gpuList);
    gpuLayout->setContentsMargins(0, 0, 0, 0);
    m_gpuLabel = new QLabel(tr("GPUs"), box);
    m_cpuReplicas = makeSpin(box, "cpuReplicasSpin", 1, 64,
                             tr("Data-parallel replicas on the CPU: each trains on its own share of every step "
                                "and the cores are split between them"));
    m_overlapComm = new QCheckBox(tr("during the backward"), box);
    m_overlapComm->setObjectName(QStringLiteral("overlapCommCheck"));
    m_overlapComm->setToolTip(tr("With several replicas, send each layer's gradients while the layers below are "
                                 "still computing (4 MiB buckets); off, everything is sent after the backward. "
                                 "Both give the same bits"));
    m_threads = makeSpin(box, "threadsSpin", 0, 1024, tr("CPU threads for the CPU backend"),
                         tr("all cores (%1)").arg(default_cpu_threads()));
    m_seed = new QLineEdit(box);
    m_seed->setObjectName(QStringLiteral("seedEdit"));
    m_seed->setValidator(new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[0-9]{1,19}")), m_seed));
    m_seed->setToolTip(tr("Initialisation and data order; the same seed gives the same run"));
    f->addRow(tr("Device"), m_device);
    f->addRow(m_deviceNote);
    f->addRow(m_gpuLabel, m_gpuList);
    f->addRow(tr("CPU replicas"), m_cpuReplicas);
    f->addRow(tr("Gradient exchange"), m_overlapComm);
    f->addRow(tr("CPU threads"), m_threads);
    f->addRow(tr("Seed"), m_seed);
    connect(m_device, &QComboBox::currentIndexChanged, this, [this] {
        const std::string device = m_device->currentData().toString().toStdString();
        edit([&](TrainConfig& t) { t.device = device; });
    });
    // A choice the user makes is remembered for the next start (see updateDevices).
    connect(m_device, &QComboBox::activated, this, [this] {
        QSettings().setValue(QStringLiteral("train/device"), m_device->currentData().toString());
    });
    connect(m_threads, &QSpinBox::valueChanged, this, [this](int v) { edit([&](TrainConfig& t) { t.threads = v; }); });
    connect(m_cpuReplicas, &QSpinBox::valueChanged, this,
            [this](int v) { edit([&](TrainConfig& t) { t.cpu_replicas = v; }); });
    connect(m_overlapComm, &QCheckBox::toggled, this,
            [this](bool on) { edit([&](TrainConfig& t) { t.overlap_comm = on; }); });
    connect(m_seed, &QLineEdit::editingFinished, this, [this] {
        bool ok = false;
        const qulonglong seed = m_seed->text().toULongLong(&ok);
        if (ok) edit([&](TrainConfig& t) { t.seed = seed; });
    });
    return box;
}

void TrainSettings::updateDevices()
{
    const DeviceInventory* devices = m_context.devices();
    auto* model = qobject_cast<QStandardItemModel*>(m_device->model());
    QStandardItem* cuda = model->item(1);
    if (devices->cudaAvailable()) {
        cuda->setEnabled(true);
        cuda->setText(tr("CUDA — %1").arg(devices->cudaDevices().front().name));
        cuda->setToolTip(QString());
    } else {
        cuda->setEnabled(false);
        cuda->setText(tr("CUDA GPU (unavailable)"));
        cuda->setToolTip(devices->cudaUnavailableReason());
    }
    model->item(0)->setText(tr("CPU — %1").arg(devices->cpu().name));
    rebuildGpuBoxes();
    // Once the GPU probe is in, a run that still has the built-in CPU default
    // moves to the best device (or the one the user chose before).
    if (devices->cudaProbed() && !m_deviceDefaulted) {
        m_deviceDefaulted = true;
        const QString remembered = QSettings().value(QStringLiteral("train/device")).toString();
        const QString best = DeviceInventory::preferredDevice(devices->cudaAvailable(), remembered);
        if (m_context.config()->config().train.device == "cpu" && best != QLatin1String("cpu"))
            selectData(m_device, best);
    }
    updateDerived();
}

void TrainSettings::rebuildGpuBoxes()
{
    qDeleteAll(m_gpuBoxes);
    m_gpuBoxes.clear();
    const QList<DeviceDescription> gpus = m_context.devices()->cudaDevices();
    if (gpus.size() < 2) return;   // one GPU: nothing to choose
    const std::vector<int>& chosen = m_context.config()->config().train.gpus;
    for (int i = 0; i < gpus.size(); ++i) {
        auto* tick = new QCheckBox(tr("GPU %1 — %2").arg(i).arg(gpus[i].name), m_gpuList);
        tick->setObjectName(QStringLiteral("gpuCheck%1").arg(i));
        tick->setChecked(chosen.empty() ? i == 0 : std::find(chosen.begin(), chosen.end(), i) != chosen.end());
        connect(tick, &QCheckBox::toggled, this, &TrainSettings::applyGpuTicks);
        m_gpuList->layout()->addWidget(tick);
        m_gpuBoxes.append(tick);
    }
}

void TrainSettings::applyGpuTicks()
{
    std::vector<int> ticked;
    for (int i = 0; i < m_gpuBoxes.size(); ++i)
        if (m_gpuBoxes[i]->isChecked()) ticked.push_back(i);
    if (ticked.empty()) {   // training needs a GPU: keep the one just unticked
        auto* last = qobject_cast<QCheckBox*>(sender());
        if (last) {
            const QSignalBlocker block(last);
            last->setChecked(true);
        }
        return;
    }
    edit([&](TrainConfig& t) { t.gpus = ticked.size() == 1 && ticked[0] == 0 ? std::vector<int>{} : ticked; });
}

void TrainSettings::edit(const std::function<void(TrainConfig&)>& change)
{
    if (m_loading) return;
    TrainConfig t = m_context.config()->config().train;
    change(t);
    m_loading = true;
    m_context.config()->setTrain(t);
    m_loading = false;
}

void TrainSettings::loadFromConfig()
{
    m_loading = true;
    const TrainConfig& t = m_context.config()->config().train;
    const OptimizerConfig& o = t.optimizer;
    selectData(m_optimizer, QLatin1String(to_string(o.type)));
    m_lr->setValue(o.lr);
    m_beta1->setValue(o.beta1);
    m_beta2->setValue(o.beta2);
    m_eps->setValue(o.eps);
    m_weightDecay->setValue(o.weight_decay);
    m_gradClip->setValue(o.grad_clip);
    m_muonLr->setValue(o.muon_lr);
    m_muonMomentum->setValue(o.muon_momentum);
    m_muonNesterov->setChecked(o.muon_nesterov);
    m_muonNs->setValue(o.muon_ns_steps);
    m_muonWd->setValue(o.muon_weight_decay);
    m_muonMatch->setChecked(o.muon_match_adamw_rms);
    selectData(m_schedule, QLatin1String(to_string(t.schedule.kind)));
    m_warmup->setValue(t.schedule.warmup_steps);
    m_minLr->setValue(t.schedule.min_lr_ratio);
    m_decayFraction->setValue(t.schedule.decay_fraction);
    m_steps->setValue(t.steps);
    m_batch->setValue(t.batch_size);
    m_accum->setValue(t.grad_accum);
    m_seqLen->setValue(t.seq_len);
    m_evalEvery->setValue(t.eval_every);
    m_evalBatches->setValue(t.eval_batches);
    m_checkpointEvery->setValue(t.checkpoint_every);
    m_sampleEvery->setValue(t.sample_every);
    m_sampleTokens->setValue(t.sample_tokens);
    m_samplePrompt->setText(escapeControl(qs(t.sample_prompt)));
    m_temperature->setValue(t.sample_temperature);
    selectData(m_device, qs(t.device));
    m_threads->setValue(t.threads);
    m_cpuReplicas->setValue(t.cpu_replicas);
    m_overlapComm->setChecked(t.overlap_comm);
    for (int i = 0; i < m_gpuBoxes.size(); ++i) {
        const QSignalBlocker block(m_gpuBoxes[i]);
        m_gpuBoxes[i]->setChecked(t.gpus.empty() ? i == 0 : std::find(t.gpus.begin(), t.gpus.end(), i) != t.gpus.end());
    }
    m_seed->setText(QString::number(qulonglong(t.seed)));
    m_loading = false;
}

void TrainSettings::updateDerived()
{
    const RunConfig& c = m_context.config()->config();
    const TrainConfig& t = c.train;
    const bool muon = t.optimizer.type == OptimizerType::muon;
    m_muonBox->setVisible(muon);
    // A fine-tune trains only its adapters, with AdamW at their own rate.
    const bool finetune = c.finetune.has_value();
    if (auto* form = qobject_cast<QFormLayout*>(m_lr->parentWidget()->layout()))
        if (auto* label = qobject_cast<QLabel*>(form->labelForField(m_lr)))
            label->setText(finetune ? tr("Adapter learning rate") : tr("Learning rate"));
    m_optimizer->setEnabled(!finetune || muon);
    m_optimizer->setToolTip(finetune ? tr("LoRA adapters train with AdamW")
                                     : tr("Muon orthogonalises the update of each attention and MLP matrix "
                                          "(Newton–Schulz); embeddings, head and norms stay on AdamW"));
    m_muonLr->setEnabled(!t.optimizer.muon_match_adamw_rms);
    const bool wsd = t.schedule.kind == ScheduleKind::wsd;
    m_decayFraction->setVisible(wsd);
    m_decayLabel->setVisible(wsd);
    m_minLr->setEnabled(t.schedule.kind != ScheduleKind::constant);

    const int seq = t.resolved_seq_len(c.model);
    const int replicas = t.replicas();
    m_tokensPerStep->setText(
        replicas > 1 ? tr("%1 tokens per optimizer step (%2 replicas × %3 × %4 × %5)")
                           .arg(QLocale().toString(qlonglong(t.tokens_per_step(c.model))))
                           .arg(replicas)
                           .arg(t.batch_size)
                           .arg(t.grad_accum)
                           .arg(seq)
                     : tr("%1 tokens per optimizer step (%2 × %3 × %4)")
                           .arg(QLocale().toString(qlonglong(t.tokens_per_step(c.model))))
                           .arg(t.batch_size)
                           .arg(t.grad_accum)
                           .arg(seq));

    if (t.device == "cuda" && !m_context.devices()->cudaAvailable())
        m_deviceNote->setText(QStringLiteral("<span style='color:%1'>%2</span>")
                                  .arg(theme::danger().name(), m_context.devices()->cudaUnavailableReason().toHtmlEscaped()));
    else if (!m_context.devices()->cudaAvailable() && m_context.devices()->cudaProbed())
        m_deviceNote->setText(tr("CUDA unavailable: %1").arg(m_context.devices()->cudaUnavailableReason()));
    else
        m_deviceNote->setText(t.device == "cuda" ? tr("bf16 compute with fp32 master weights")
                                                 : tr("fp32 compute with OpenBLAS and OpenMP"));
    m_threads->setEnabled(t.device == "cpu");
    m_cpuReplicas->setEnabled(t.device == "cpu");
    // Only several replicas exchange gradients.
    m_overlapComm->setEnabled(t.replicas() > 1);
    const bool chooseGpus = t.device == "cuda" && !m_gpuBoxes.isEmpty();
    m_gpuList->setVisible(chooseGpus);
    m_gpuLabel->setVisible(chooseGpus);

    // The schedule as the trainer will apply it: peak rate × multiplier.
    m_preview->clearData();
    const std::string problem = t.schedule.problems(t.steps);
    if (t.steps < 1 || !problem.empty()) {
        m_preview->setPlaceholderText(problem.empty() ? tr("Set at least one step") : qs(problem));
    } else {
        const int points = std::min(t.steps, 600);
        std::vector<ChartSample> samples;
        samples.reserve(size_t(points) + 1);
        for (int i = 0; i <= points; ++i) {
            const int64_t step = std::min<int64_t>(int64_t(double(i) * t.steps / points), t.steps - 1);
            if (!samples.empty() && samples.back().step == double(step + 1)) continue;
            samples.push_back({double(step + 1), 0.0, t.optimizer.lr * lr_multiplier(t.schedule, step, t.steps)});
        }
        m_preview->append(0, samples);
    }
}

} // namespace crucible::ui
