#!/usr/bin/env bash
# Flash attention on a Hopper GPU (compute capability 9.0): the machine code of
# the Hopper forward, its correctness against the CPU reference (both flash
# paths), then the timings of both paths beside PyTorch SDPA with its default
# backend choice and each backend forced. From the repository root:
#
#   tests/peers/hopper_check.sh BIN_DIR [attention|decode|all]
#
# BIN_DIR holds crucible-cli, tst_flash_attention and libcrucible_cuda.so (a
# build's bin/ with lib/crucible/ beside it works too). "decode" also runs the
# decode peer in all its modes (torch.compile takes minutes). Logs go to $OUT
# (or /tmp/crucible-hopper); a compact table is printed last. Time limits in
# seconds: HOPPER_TEST_LIMIT (each test run, 420), HOPPER_BENCH_LIMIT (the
# attention benchmark, 480); HOPPER_SKIP_SERIAL=1 skips timing the Hopper
# kernel's plain schedule.
set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BIN_DIR [attention|decode|all]" >&2
  exit 2
fi
bin=$(cd "$1" && pwd)
part=${2:-attention}
out=${OUT:-/tmp/crucible-hopper}
mkdir -p "$out"
# The plugin: beside the binaries, in a build's lib/crucible/, or wherever
# CRUCIBLE_CUDA_PLUGIN already points.
plugin=
for p in "$bin/libcrucible_cuda.so" "$bin/../lib/crucible/libcrucible_cuda.so" "${CRUCIBLE_CUDA_PLUGIN:-}"; do
  if [ -n "$p" ] && [ -f "$p" ]; then plugin=$(cd "$(dirname "$p")" && pwd)/$(basename "$p"); break; fi
done
if [ -z "$plugin" ]; then
  echo "no libcrucible_cuda.so in $bin, $bin/../lib/crucible or CRUCIBLE_CUDA_PLUGIN" >&2
  exit 2
fi
export CRUCIBLE_CUDA_PLUGIN=$plugin
echo "plugin: $plugin"
export PATH=$bin:$PATH
export LD_LIBRARY_PATH=$bin:$bin/lib:${LD_LIBRARY_PATH:-}
export CRUCIBLE_CACHE_DIR=${CRUCIBLE_CACHE_DIR:-$out/cache}
peers=$(cd "$(dirname "$0")" && pwd)
status=()

step() {   # step NAME SECONDS COMMAND...: runs it under a time limit, logs to $out/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  status+=("$name rc=$rc")
  tail -n 25 "$out/$name.txt"
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' 2>&1 | tee -a "$out/gpu.txt"

# Machine code: the Hopper kernel must run on HGMMA (wgmma), UTMALDG (TMA)
# and SYNCS (mbarrier) instructions, not HMMA.
if command -v cuobjdump > /dev/null; then
  cuobjdump --dump-sass "$plugin" > "$out/sass.txt" 2>&1
  awk '/Function :/ {f = $3} /HGMMA|UTMALDG|HMMA/ {for (i = 1; i <= NF; ++i) if ($i ~ /^(HGMMA|UTMALDG|HMMA)/) {split($i, op, "."); n[f " " op[1]]++}}
       END {for (k in n) if (k ~ /hopper_forward/) print n[k], k}' "$out/sass.txt" | sort -k3 | tee "$out/sass_summary.txt"
else
  echo "cuobjdump not found: SASS not checked" | tee "$out/sass_summary.txt"
fi

if [ "$part" = attention ] || [ "$part" = all ]; then
  # The Hopper slots first (short), then the whole suite.
  step tst_hopper 120 "$bin/tst_flash_attention" hopper_error_map hopper_tiles hopper_serial_schedule deterministic
  step tst_flash_attention "${HOPPER_TEST_LIMIT:-420}" "$bin/tst_flash_attention"
  # A short digest (the full logs stay in $out): failures, the error maps,
  # the worst errors and a few of the Hopper checks.
  { grep -hE "^FAIL|error map|worst|^Totals" "$out/tst_hopper.txt" "$out/tst_flash_attention.txt" | head -n 14
    grep -hE " hopper +vs cpu" "$out/tst_flash_attention.txt" | tail -n 4; } > "$out/tst_hopper_lines.txt"
  step bench_attention "${HOPPER_BENCH_LIMIT:-480}" crucible-cli bench attention --device cuda --no-naive --json \
    --peer --peer-script "$peers/torch_attention_bench.py"
  # The Hopper kernel's plain schedule, forward only: what the overlap buys.
  if [ "${HOPPER_SKIP_SERIAL:-0}" != 1 ]; then
    CRUCIBLE_HOPPER_SCHEDULE=serial step bench_attention_serial 240 crucible-cli bench attention --device cuda \
      --no-naive --forward-only
  fi
fi
if [ "$part" = decode ] || [ "$part" = all ]; then
  step bench_generate 560 crucible-cli bench generate --device cuda --preset base --preset small --batch 1 --batch 8 \
    --no-recompute --lengths 512 --peer --peer-script "$peers/torch_generate_bench.py"
fi

echo
echo "== summary (logs in $out)"
printf '%s\n' "${status[@]}"
cat "$out/sass_summary.txt"
[ -f "$out/tst_hopper_lines.txt" ] && cat "$out/tst_hopper_lines.txt"
[ -f "$out/bench_attention_serial.txt" ] && grep -E "^D|hopper fwd" "$out/bench_attention_serial.txt" | sed 's/^/serial schedule: /'
[ -f "$out/bench_generate.txt" ] && grep -E "B1 L512|B8 L512|pytorch" "$out/bench_generate.txt" | head -n 30
if [ -f "$out/bench_attention.txt" ]; then
  python3 - "$out/bench_attention.txt" <<'PY'
import json, math, sys
text = open(sys.argv[1]).read()
try:
    j = json.loads(text[text.index("{"):])
except ValueError:
    sys.exit("bench attention wrote no table (see bench_attention.txt)")
nan = float("nan")
def v(row, key):
    x = row.get(key) if row else None
    return nan if x is None else x
def f(x):
    return "-" if math.isnan(x) else f"{x:.0f}"
def best(*xs):
    xs = [x for x in xs if not math.isnan(x)]
    return max(xs) if xs else nan
backends = {r["label"]: r for r in j.get("sdpa_backends", {}).get("rows", [])}
names = ("default", "cudnn", "flash", "efficient")
print("TFLOP/s (causal bf16); hop = Hopper forward, port = portable; SDPA: default/cudnn/flash/efficient;"
      " x = our best / fastest SDPA")
print(f"{'shape':<11}{'hop fwd':>8}{'port fwd':>9}{'SDPA fwd d/c/f/e':>22}{'x':>6} |"
      f"{'port f+b':>9}{'hop f+b':>8}{'SDPA f+b d/c/f/e':>22}{'x':>6}")
for r in j["rows"]:
    b = backends.get(r["label"])
    sd = "/".join(f(v(b, "fwd_" + k)) for k in names)
    sb = "/".join(f(v(b, "fwdbwd_" + k)) for k in names)
    hop, port = v(r, "hopper_fwd_tflops"), v(r, "portable_fwd_tflops")
    hfb, pfb = v(r, "hopper_fwdbwd_tflops"), v(r, "portable_fwdbwd_tflops")
    ours_f = best(hop, port, v(r, "fwd_tflops"))
    ours_fb = best(hfb, pfb, v(r, "fwdbwd_tflops"))
    rf = ours_f / v(r, "peer_fwd_tflops")
    rfb = ours_fb / v(r, "peer_fwdbwd_tflops")
    print(f"{r['label']:<11}{f(hop):>8}{f(port):>9}{sd:>22}{rf:>6.2f} |{f(pfb):>9}{f(hfb):>8}{sb:>22}{rfb:>6.2f}")
PY
fi
