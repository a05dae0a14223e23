// metrics.jsonl as the Runs page and a resumed run read it: every line a
// JSON object or skipped, then cut back to a step as a resume does.
#include "core/io/file_util.h"
#include "core/train/run_catalog.h"
#include "core/train/run_dir.h"
#include "core/train/run_recovery.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    using namespace crucible;
    const auto root = fuzz::scratch_dir() / "run";
    static const bool made = [&] {
        std::filesystem::create_directories(root);
        RunDirectory(root).write_config(RunConfig{});
        return true;
    }();
    (void)made;
    const RunDirectory run(root);
    fuzz::write_input("run/metrics.jsonl", data, size);
    CRUCIBLE_FUZZ_REFUSALS_OK((void)run.read_metrics());
    CRUCIBLE_FUZZ_REFUSALS_OK((void)read_run_metrics(root));
    CRUCIBLE_FUZZ_REFUSALS_OK((void)read_run(root));
    CRUCIBLE_FUZZ_REFUSALS_OK(truncate_metrics(run, 5));
    return 0;
}
