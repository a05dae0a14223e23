// crucible-cli info: what this build can do and what it runs on.
#include "app/cli/commands.h"

#include "core/model/model_config.h"
#include "core/train/memory_estimate.h"
#include "core/util/paths.h"
#include "kernels/backend_factory.h"
#include "kernels/cuda_plugin.h"

#include <fmt/core.h>

namespace crucible::cli {

int report_error(const std::exception& e)
{
    fmt::print(stderr, "error: {}\n", e.what());
    return kExitFailure;
}

namespace {

// Each backend's facts already hold its memory and peak throughput.
void print_facts(const DeviceFacts& f)
{
    fmt::print("  {}\n", f.name);
    for (const auto& [key, value] : f.details) fmt::print("    {:<22} {}\n", key, value);
}

int run_info()
{
    fmt::print("crucible {}\n\nbuild\n", CRUCIBLE_VERSION);
    const std::string plugin = cuda_plugin_path();
    fmt::print("  CUDA backend           {}\n", plugin.empty() ? "not loaded (CPU only)" : "loaded from " + plugin);
#ifdef CRUCIBLE_HAS_SERVER
    fmt::print("  OpenAI server          yes (crucible-cli serve)\n");
#else
    fmt::print("  OpenAI server          no (built without cpp-httplib)\n");
#endif
    fmt::print("  default CPU threads    {}\n", default_cpu_threads());
    fmt::print("  cache                  {}\n", default_cache_dir().string());
    fmt::print("  runs                   {}\n", default_runs_dir().string());
    fmt::print("\ndevices\n");
    auto cpu = make_backend(BackendOptions{});
    print_facts(cpu->facts());
    std::string why;
    if (cuda_available(&why)) {
        for (int i = 0; i < cuda_device_count(); ++i) {
            BackendOptions o;
            o.device = DeviceKind::cuda;
            o.cuda_device = i;
            auto gpu = make_backend(o);
            print_facts(gpu->facts());
        }
    } else {
        fmt::print("  CUDA: {}\n", why);
    }
    fmt::print("\npresets\n");
    for (const auto& name : preset_names()) {
        const ModelConfig c = preset(name);
        fmt::print("  {:<6} {:>6.1f}M params  vocab {:<6} d {:<4} layers {:<3} heads {}/{} ff {:<5} seq {}\n", name,
                   double(count_params(c).total()) / 1e6, c.vocab_size, c.d_model, c.n_layers, c.n_heads,
                   c.n_kv_heads, c.ff_dim, c.seq_len);
    }
    return 0;
}

} // namespace

void add_info_command(CLI::App& app, int& exit_code)
{
    auto path = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("info", "Show build features, devices, threads and presets; or describe a model or "
                                           "an adapter folder");
    cmd->add_option("path", *path, "A run, model folder, fine-tune run or PEFT adapter folder to describe");
    cmd->callback([path, &exit_code] {
        try {
            exit_code = path->empty() ? run_info() : describe_model_path(*path);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
