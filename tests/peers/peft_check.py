#!/usr/bin/env python3
"""Checks Crucible's LoRA adapters against PEFT itself, both ways.

  1. A base is trained (nano, 60 steps) and exported as a Hugging Face folder;
     `crucible-cli finetune` trains adapters on it (all-linear, r 8, no
     dropout). transformers loads the base (fp32) and PeftModel.from_pretrained
     the fine-tune's latest checkpoint unchanged; its logits at every position
     of a text agree with Crucible's (`crucible-cli tokenize --logits` on the
     fine-tune run) within 1e-4 relative (Frobenius norm).
  2. PEFT makes an adapter of its own (get_peft_model, q/v/o/down, r 4,
     rsLoRA, B drawn at random so that it changes the logits) and saves it with
     save_pretrained; Crucible loads that folder (`tokenize --run ADAPTER`) and
     its logits agree with PeftModel's within the same limit.

Run on a machine with transformers and peft, from the repository root:
  python3 tests/peers/peft_check.py --cli build/bin/crucible-cli
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
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

TEXT = (
    "Everyone is permitted to copy and distribute verbatim copies of this license document, "
    "but changing it is not allowed.\n\nFirst Citizen:\nBefore we proceed any further, hear me speak.\n"
)
TOLERANCE = 1e-4


def crucible(cli, *args):
    done = subprocess.run([cli, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"crucible-cli {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def crucible_logits(cli, run, work, name):
    path = os.path.join(work, "text.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(TEXT)
    logits_file = os.path.join(work, name + ".logits")
    info = json.loads(crucible(cli, "tokenize", "--run", run, "--text-file", path, "--logits", logits_file))
    return info["ids"], np.fromfile(logits_file, dtype="<f4").reshape(info["logits_shape"])


def compare(label, ours, theirs):
    rel = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    same_argmax = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    passed = rel <= TOLERANCE
    print(f"  {label}: relative error {rel:.2e} (limit {TOLERANCE:.0e}), argmax agreement {same_argmax:.0%} "
          f"-> {'ok' if passed else 'FAIL'}")
    return passed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", default="build/bin/crucible-cli")
    parser.add_argument("--data", default="resources/finetune", help="the fine-tuning text")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as work:
        base_run = os.path.join(work, "base-run")
        base = os.path.join(work, "base-hf")
        crucible(args.cli, "train", "--preset", "nano", "--steps", "60", "--eval-every", "0", "--device", "cpu",
                 "--quiet", "--out", base_run)
        crucible(args.cli, "export", "--run", base_run, "--format", "hf", "--out", base)

        # 1. Crucible's adapter in PEFT.
        ft = os.path.join(work, "ft")
        crucible(args.cli, "finetune", "--base", base, "--data", args.data, "--lora-r", "8", "--lora-alpha", "16",
                 "--lora-targets", "all-linear", "--steps", "20", "--eval-every", "0", "--sample-tokens", "0",
                 "--device", "cpu", "--quiet", "--out", ft)
        checkpoints = sorted(os.listdir(os.path.join(ft, "checkpoints")), key=lambda s: int(s.split("_")[1]))
        adapter = os.path.join(ft, "checkpoints", checkpoints[-1])
        ids, ours = crucible_logits(args.cli, ft, work, "ft")
        model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        model = PeftModel.from_pretrained(model, adapter).eval()
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].numpy()
        print(f"Crucible's adapter {adapter} in PeftModel:")
        ok &= compare("logits", ours, theirs)

        # 2. PEFT's adapter in Crucible.
        model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=6, use_rslora=True, lora_dropout=0.0, task_type="CAUSAL_LM",
                            target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
        model = get_peft_model(model, config)
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.05)
        peft_dir = os.path.join(work, "peft-adapter")
        model.save_pretrained(peft_dir)
        model.eval()
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].numpy()
        ids2, ours = crucible_logits(args.cli, peft_dir, work, "peft")
        print(f"PEFT's adapter {peft_dir} in Crucible:")
        ok &= ids2 == ids
        ok &= compare("logits", ours, theirs)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
