#!/usr/bin/env bash
# Every GPU measurement the project quotes, side by side with PyTorch on the
# same GPU, from the repository root of a machine with a CUDA build on PATH:
#
#   tests/peers/gpu_measurements.sh tests|speedrun|generate|train|attention|suites|all
#
# Logs go to $OUT (or /tmp/crucible-gpu). Each part is independent.
set -u
out=${OUT:-/tmp/crucible-gpu}
mkdir -p "$out"
export CRUCIBLE_CACHE_DIR=${CRUCIBLE_CACHE_DIR:-$out/cache}
peers=tests/peers
runs=$out/runs
log() { echo "== $*" | tee -a "$out/log.txt"; "$@" 2>&1 | tee -a "$out/log.txt"; }

part_tests() {
  for t in tst_op_parity tst_flash_attention tst_cuda_training tst_cuda_generation tst_cuda_curve; do
    log "$t" -o "$out/$t.txt,txt" -o -,txt
  done
}

# Shakespeare speedrun: training seconds until validation reaches 2.30 bits
# per byte (small, Muon, B32 T512, SentencePiece 8192 on the first 90%).
# One epoch is ~18 steps and the best validation comes after ~3: a 60-step
# WSD schedule anneals right there. Five seeds, since one seed's best moves
# by about +-0.01 bits per byte.
part_speedrun() {
  for seed in 1 2 3 4 5; do
    name=speedrun-seed$seed
    log crucible-cli train --preset small --optimizer muon --muon-lr 0.015 --lr 0.003 --batch 32 --seq 512 \
      --steps 60 --warmup 5 --schedule wsd --eval-every 5 --sample-tokens 0 --seed $seed \
      ${SPEEDRUN_TARGET:---target-bpb 2.30} --device cuda --quiet --out "$runs/$name" > /dev/null
    awk -v n=$name '/^eval/ {v=$(NF-1); if (best == "" || v < best) {best=v; at=$2}}
      /^finished/ {print n ": best", best, "bits/byte at step", at, "|", $0}' <(sed -n "/$name\$/,\$p" "$out/log.txt")
  done
}

part_generate() {
  log crucible-cli bench generate --device cuda --preset base --preset small --batch 1 --batch 8 \
    --peer --peer-script $peers/torch_generate_bench.py
  # What the fused decode kernels buy: the same steps through the separate ops.
  log crucible-cli bench generate --device cuda --preset base --preset small --batch 1 --batch 8 \
    --no-recompute --lengths 512 --no-fused
  # What decode bursts buy: one greedy step per graph launch and wait.
  log crucible-cli bench generate --device cuda --preset base --preset small --batch 1 --batch 8 \
    --no-recompute --lengths 512 --decode-burst 1
  # Speculative decoding: base and a micro-shaped draft on one 32K tokenizer.
  # At this vocabulary an epoch is ~33 steps of 8×1024 tokens, and base is
  # best after ~3 epochs (it overfits beyond): a 100-step WSD run each.
  local short="--steps 100 --warmup 10 --schedule wsd --eval-every 50 --sample-tokens 0 --device cuda --quiet"
  log crucible-cli train --preset base --batch 8 $short --out "$runs/base"
  log crucible-cli train --preset micro --vocab 32768 --context 1024 --batch 16 --seq 512 $short --out "$runs/draft"
  for k in 2 3 4; do
    log crucible-cli bench generate --device cuda --run "$runs/base" --draft "$runs/draft" --lookahead $k \
      --batch 1 --batch 8 --no-recompute --lengths 512
  done
}

part_train() {
  log crucible-cli bench train --device cuda --preset small --preset base --peer --peer-script $peers/torch_train_bench.py
  log crucible-cli bench train --device cuda --preset small --preset base --optimizer muon
}

part_attention() {
  log crucible-cli bench attention --peer --peer-script $peers/torch_attention_bench.py
}

# Every benchmark suite at the GPU's sizes, with the peers, into one results
# file (open it in the app, or `crucible-cli bench claims` / `bench compare` it).
part_suites() {
  log crucible-cli bench all --device cuda --peer --out "$out/suites.jsonl"
  log crucible-cli bench claims "$out/suites.jsonl"
}

for part in "${@:-all}"; do
  case $part in
    all) part_tests; part_speedrun; part_generate; part_train; part_attention; part_suites ;;
    tests|speedrun|generate|train|attention|suites) "part_$part" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
