// crucible-cli train / demo: run the Trainer with a progress line.
#include "app/cli/commands.h"
#include "app/cli/progress_sink.h"
#include "app/cli/train_options.h"

#include "core/train/trainer.h"
#include "core/util/paths.h"
#include "kernels/net/process_launch.h"

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <thread>

namespace crucible::cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

// Ctrl-C, `kill` (SIGTERM, what service managers and schedulers send) and a
// closed terminal (SIGHUP) all stop after the current step with a checkpoint.
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

void on_interrupt(int)
{
    g_interrupted = 1;
    for (int sig : kStopSignals) std::signal(sig, SIG_DFL);   // a second signal ends the process at once
}

} // namespace

std::string timestamp()
{
    const std::time_t now = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&now));
    return buf;
}

namespace {

struct TrainCommand {
    TrainOptions options;
    std::string out, resume;
    bool json = false, quiet = false;
};

} // namespace

// Runs the trainer; a stop signal asks it to stop after the current step,
// which writes a checkpoint.
int run_training(const RunConfig& config, const TrainerOptions& topts, bool json, bool quiet)
{
    // Under mpirun or torchrun, rank 0 reports the run; the others only fail loudly.
    const bool reports = !topts.launch || topts.launch->rank == 0;
    ProgressSink sink(json, quiet || !reports);
    Trainer trainer(config, topts, &sink);
    g_interrupted = 0;
    for (int sig : kStopSignals) std::signal(sig, on_interrupt);
    std::atomic<bool> done{false};
    std::thread watcher([&] {
        while (!done.load()) {
            if (g_interrupted) {
                trainer.request_stop();
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });
    const RunSummary summary = trainer.run();
    done = true;
    watcher.join();
    for (int sig : kStopSignals) std::signal(sig, SIG_DFL);
    if (summary.outcome == RunOutcome::failed) {
        if (topts.launch) fmt::print(stderr, "error: rank {}: {}\n", topts.launch->rank, summary.error);
        else fmt::print(stderr, "error: {}\n", summary.error);
        return kExitFailure;
    }
    if (summary.outcome == RunOutcome::stopped) {
        if (!json && reports)
            fmt::print("stopped; resume with: crucible-cli {} --resume {}\n", config.finetune ? "finetune" : "train",
                       topts.run_dir.string());
        return kExitStopped;
    }
    return 0;
}

namespace {

int run_train(const TrainCommand& c)
{
    TrainerOptions topts;
    RunConfig config;
    if (!c.resume.empty()) {
        if (!c.out.empty()) throw Error("--out and --resume are exclusive: --resume continues a run in place");
        topts.run_dir = c.resume;
        topts.resume = true;
        // Only --steps can extend a resumed run; the model and training settings come from its config.json ...
        if (c.options.steps) config.train.steps = *c.options.steps;
        else config.train.steps = 0;
        // ... and where it trains: a run resumes on any number of replicas.
        if (c.options.placement_given()) {
            TrainConfig placement;
            placement.device = "";
            c.options.apply_placement(placement);
            topts.placement = placement;
        }
    } else {
        config = c.options.resolve();
        topts.run_dir = c.out.empty() ? default_runs_dir() / (config.model.name + "-" + timestamp()) : std::filesystem::path(c.out);
    }
    // Launched once per device by mpirun or torchrun: one replica of the job.
    topts.launch = process_launch_from_environment();
    if (topts.launch) {
        if (c.out.empty() && c.resume.empty())
            throw Error("a job of several processes needs --out (or --resume): every rank must name the same run folder");
        fmt::print(stderr, "crucible: training as {}\n", topts.launch->describe());
    }
    return run_training(config, topts, c.json, c.quiet);
}

} // namespace

void add_train_command(CLI::App& app, int& exit_code)
{
    auto cmd_state = std::make_shared<TrainCommand>();
    auto* cmd = app.add_subcommand("train", "Train a model (from a preset or config) and write a run directory");
    cmd_state->options.add_to(*cmd);
    cmd->add_option("--out", cmd_state->out, "Run directory to create (default: a new folder under the runs directory)");
    cmd->add_option("--resume", cmd_state->resume, "Continue the run in this directory from its latest checkpoint");
    cmd->add_flag("--json", cmd_state->json, "Print one JSON object per event instead of a progress line");
    cmd->add_flag("--quiet", cmd_state->quiet, "Only evaluations, checkpoints and the summary");
    cmd->footer("Examples:\n  crucible-cli train --preset nano --steps 500\n"
                "  crucible-cli train --preset micro --optimizer muon --data notes/ --out runs/micro-muon\n"
                "  crucible-cli train --resume runs/micro-muon --steps 2000");
    cmd->callback([cmd_state, &exit_code] {
        try {
            exit_code = run_train(*cmd_state);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

void add_demo_command(CLI::App& app, int& exit_code)
{
    auto out = std::make_shared<std::string>();
    auto steps = std::make_shared<int>(300);
    auto* cmd = app.add_subcommand("demo", "Train the nano preset on the embedded Tiny Shakespeare and print samples");
    cmd->add_option("--steps", *steps, "Optimizer steps")->capture_default_str();
    cmd->add_option("--out", *out, "Run directory (default: a new folder under the runs directory)");
    cmd->callback([out, steps, &exit_code] {
        try {
            TrainOptions o;
            o.steps = *steps;
            o.eval_every = std::max(*steps / 3, 1);
            o.eval_batches = 8;
            o.lr = 3e-3f;
            RunConfig config = o.resolve();
            TrainerOptions topts;
            topts.run_dir = out->empty() ? default_runs_dir() / ("demo-" + timestamp()) : std::filesystem::path(*out);
            fmt::print("Crucible demo: a {:.1f}M-parameter LLaMA-style model learns Tiny Shakespeare on the CPU.\n\n",
                       double(count_params(config.model).total()) / 1e6);
            exit_code = run_training(config, topts, false, false);
            if (exit_code == 0)
                fmt::print("\nNext: crucible-cli sample --run {} --prompt \"ROMEO:\"\n", topts.run_dir.string());
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
