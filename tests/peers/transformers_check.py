#!/usr/bin/env python3
"""Checks Crucible's Hugging Face export against transformers itself.

For each run given (or, with --train, for two it trains first: a LLaMA-shaped
nano and a Qwen3-shaped one with QK-norm):
  1. `crucible-cli export --format hf` writes the folder;
  2. AutoModelForCausalLM.from_pretrained loads it (fp32) and LlamaTokenizer
     reads its tokenizer.model;
  3. the tokenizer's ids for a set of texts equal Crucible's
     (`crucible-cli tokenize`), and the logits at every position of a text
     agree within 1e-4 relative (Frobenius norm) with Crucible's (CPU, fp32).

Run on a machine with transformers, from the repository root:
  python3 tests/peers/transformers_check.py --cli build/bin/crucible-cli --train
  python3 tests/peers/transformers_check.py --cli build/bin/crucible-cli --run runs/nano [--run ...]
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaTokenizer

TEXTS = [
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "  leading spaces, and  double  spaces",
    "Line one\n\nLine three\ttabbed",
    "caf\u00e9 na\u00efve \u2665 \u65e5\u672c\u8a9e \U0001F600",
    "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer by this sun of York;",
    "x",
]
LOGITS_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n"
)
TOLERANCE = 1e-4


def crucible(cli, *args):
    done = subprocess.run([cli, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"crucible-cli {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def check_run(cli, run, work):
    name = os.path.basename(os.path.normpath(run))
    out = os.path.join(work, name + "-hf")
    crucible(cli, "export", "--run", run, "--format", "hf", "--out", out)
    tokenizer = LlamaTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    ok = True
    print(f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")

    for text in TEXTS:
        path = os.path.join(work, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        ours = json.loads(crucible(cli, "tokenize", "--run", run, "--text-file", path))["ids"]
        theirs = tokenizer(text, add_special_tokens=False).input_ids
        same = ours == theirs
        ok &= same
        print(f"  tokens {'same' if same else 'DIFFER'} ({len(ours)}): {text[:40]!r}")
        if not same:
            print(f"    crucible     {ours}\n    transformers {theirs}")

    path = os.path.join(work, "logits-text.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(LOGITS_TEXT)
    logits_file = os.path.join(work, name + ".logits")
    info = json.loads(crucible(cli, "tokenize", "--run", run, "--text-file", path, "--logits", logits_file))
    ids = info["ids"]
    ours = np.fromfile(logits_file, dtype="<f4").reshape(info["logits_shape"])
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].numpy()
    rel = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    worst = float(np.abs(ours - theirs).max())
    same_argmax = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    passed = rel <= TOLERANCE
    ok &= passed
    print(f"  logits over {len(ids)} positions: relative error {rel:.2e} (limit {TOLERANCE:.0e}), "
          f"max |diff| {worst:.2e}, argmax agreement {same_argmax:.0%} -> {'ok' if passed else 'FAIL'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", default="build/bin/crucible-cli")
    parser.add_argument("--run", action="append", default=[], help="a run, checkpoint or model folder to check")
    parser.add_argument("--train", action="store_true", help="train two small runs (llama, qwen3) to check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        runs = list(args.run)
        if args.train:
            for name, extra in (("nano-llama", []), ("nano-qwen3", ["--qk-norm", "--untied"])):
                run = os.path.join(work, name)
                crucible(args.cli, "train", "--preset", "nano", "--steps", "60", "--eval-every", "0",
                         "--device", "cpu", "--quiet", "--out", run, *extra)
                runs.append(run)
        if not runs:
            parser.error("give --run RUN or --train")
        results = [check_run(args.cli, run, work) for run in runs]
    print("all checks passed" if all(results) else "SOME CHECKS FAILED")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
