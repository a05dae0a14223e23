#!/usr/bin/python3
"""PyTorch reference for a LoRA fine-tune step on Crucible's decoder.

Reads, from each folder named on the command line:
    config.json, model.safetensors    the base model (as torch_reference.py)
    adapter_config.json               PEFT's LoRA settings
    adapter_model.safetensors         PEFT's tensors: base_model.model.<module>.lora_A.weight
                                      [r, in] and .lora_B.weight [out, r]
    batch.safetensors                 "tokens" and "targets", I32 [B, T]
    optimizer.json                    AdamW's lr, betas, eps, weight_decay
and writes reference.safetensors: "loss" (mean cross-entropy), "logits" of
the last position of each sequence [B, V], "grad.<tensor>" for every adapter
tensor and "step.<tensor>" after one torch.optim.AdamW step, in float64.

The adapters are applied as PEFT defines them, W + scale * B @ A with
scale = lora_alpha / r (or / sqrt(r) with use_rslora), read from the files
alone: this script knows nothing of how Crucible stores them.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import Config, Reference, read_safetensors, write_safetensors  # noqa: E402

PREFIX = "base_model.model."


def run(folder):
    folder = Path(folder)
    config = Config(json.loads((folder / "config.json").read_text()))
    lora = json.loads((folder / "adapter_config.json").read_text())
    assert lora["peft_type"] == "LORA" and lora.get("bias", "none") == "none"
    r = lora["r"]
    scale = lora["lora_alpha"] / (math.sqrt(r) if lora.get("use_rslora") else r)
    adapters = {name: torch.tensor(np.array(value, dtype=np.float64), requires_grad=True)
                for name, value in read_safetensors(folder / "adapter_model.safetensors").items()}
    batch = read_safetensors(folder / "batch.safetensors")
    tokens = torch.tensor(batch["tokens"].astype(np.int64))
    targets = torch.tensor(batch["targets"].astype(np.int64))

    model = Reference(config, read_safetensors(folder / "model.safetensors"))
    for name in model.w:
        model.w[name].requires_grad_(False)
    for a_name in [n for n in adapters if n.endswith(".lora_A.weight")]:
        module = a_name[len(PREFIX):-len(".lora_A.weight")]
        b_name = PREFIX + module + ".lora_B.weight"
        weight = module + ".weight"
        assert weight in model.w, f"{a_name} adapts {weight}, which the base has not got"
        model.w[weight] = model.w[weight] + scale * adapters[b_name] @ adapters[a_name]

    loss = model.loss(tokens, targets)
    loss.backward()
    with torch.no_grad():
        x = model.w["model.embed_tokens.weight"][tokens]
        for layer in range(config.n_layers):
            p = f"model.layers.{layer}."
            x = x + model.attention(model.norm(x, p + "input_layernorm"), p + "self_attn.")
            x = x + model.mlp(model.norm(x, p + "post_attention_layernorm"), p + "mlp.")
        x = model.norm(x, "model.norm")
        head = model.w["model.embed_tokens.weight" if config.tied else "lm_head.weight"]
        logits = (x[:, -1, :] @ head.T).numpy()

    out = {"loss": np.array(loss.item()), "logits": logits}
    for name, tensor in adapters.items():
        out["grad." + name] = tensor.grad.numpy().copy()
    hyper = json.loads((folder / "optimizer.json").read_text())
    optimizer = torch.optim.AdamW(list(adapters.values()), lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                                  eps=hyper["eps"], weight_decay=hyper["weight_decay"])
    optimizer.step()
    for name, tensor in adapters.items():
        out["step." + name] = tensor.detach().numpy().copy()
    write_safetensors(folder / "reference.safetensors", out)
    print(f"{folder.name}: loss {loss.item():.10f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: lora_reference.py FOLDER... (see the docstring for what each holds)")
    for argument in sys.argv[1:]:
        run(argument)
