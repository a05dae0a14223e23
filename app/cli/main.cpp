// crucible-cli: the headless twin of the desktop app. Same engine, same run
// directories; for servers, scripts and machines without a display.
#include "app/cli/commands.h"
#include "app/cli/usage_errors.h"

#include <cstdio>

int main(int argc, char** argv)
{
    CLI::App app{"Crucible — train, evaluate and sample LLaMA-style language models.\n"
                 "Run `crucible-cli <command> --help` for the options of a command.",
                 "crucible-cli"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("crucible-cli ") + CRUCIBLE_VERSION);
    int exit_code = 0;
    crucible::cli::add_info_command(app, exit_code);
    crucible::cli::add_train_command(app, exit_code);
    crucible::cli::add_demo_command(app, exit_code);
    crucible::cli::add_eval_command(app, exit_code);
    crucible::cli::add_sample_command(app, exit_code);
    crucible::cli::add_generate_command(app, exit_code);
    crucible::cli::add_chat_command(app, exit_code);
    crucible::cli::add_bench_command(app, exit_code);
    crucible::cli::add_import_command(app, exit_code);
    crucible::cli::add_export_command(app, exit_code);
    crucible::cli::add_tokenize_command(app, exit_code);
#ifdef CRUCIBLE_HAS_SERVER
    crucible::cli::add_serve_command(app, exit_code);
#endif
    crucible::cli::add_finetune_command(app, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return crucible::cli::explain_parse_error(app, e, argc, argv);
    } catch (const std::exception& e) {
        return crucible::cli::report_error(e);
    }
    return exit_code;
}
