// crucible-cli: one function per subcommand, each registering its options on
// the CLI11 app and returning the exit code through `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace crucible::cli {

// Exit codes: 0 success, 1 failure (message printed), 2 bad usage (CLI11),
// 3 stopped by the user (Ctrl-C) with a checkpoint written.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitStopped = 3;

void add_info_command(CLI::App& app, int& exit_code);
void add_train_command(CLI::App& app, int& exit_code);
void add_demo_command(CLI::App& app, int& exit_code);
void add_eval_command(CLI::App& app, int& exit_code);
void add_sample_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_generate_command(CLI::App& app, int& exit_code);
void add_chat_command(CLI::App& app, int& exit_code);
void add_import_command(CLI::App& app, int& exit_code);
void add_export_command(CLI::App& app, int& exit_code);
void add_tokenize_command(CLI::App& app, int& exit_code);
// Built with cpp-httplib only (CRUCIBLE_HAS_SERVER): `serve` and `bench serve`.
void add_serve_command(CLI::App& app, int& exit_code);
void add_bench_serve_command(CLI::App& bench, int& exit_code);
// finetune and merge.
void add_finetune_command(CLI::App& app, int& exit_code);
// `info PATH`: a base model or an adapter (fine-tune run or PEFT folder).
int describe_model_path(const std::string& path);
// `bench generate`, registered by add_bench_command on its `bench` subcommand.
void add_bench_generate_command(CLI::App& bench, int& exit_code);
void add_bench_attention_command(CLI::App& bench, int& exit_code);
void add_bench_quant_command(CLI::App& bench, int& exit_code);
// `bench norms`, `gqa`, `kv-cache`, `decode`, `optimizers`, `finetune`, `all`, `suites`, `compare`, `claims`.
void add_bench_suite_commands(CLI::App& bench, int& exit_code);

// Prints "error: ..." to stderr and returns kExitFailure.
int report_error(const std::exception& e);

} // namespace crucible::cli
