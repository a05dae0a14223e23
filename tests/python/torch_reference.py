#!/usr/bin/python3
"""PyTorch reference for Crucible's decoder (core/model/transformer.h).

Reads, from each folder named on the command line (one interpreter start
serves many test cases):
    config.json         Hugging Face keys as Crucible writes them (to_hf_config)
    model.safetensors   the weights, Hugging Face names, [out, in] matrices
    batch.safetensors   "tokens" and "targets", I32 [B, T]
and writes reference.safetensors there: "loss" (the mean cross-entropy) and
the gradient of that loss for every weight, under the weight's own name, all
computed in float64.

Written out by hand, layer by layer, rather than through transformers, so that
each convention can be read next to the C++ it checks: pre-norm, RMSNorm or
LayerNorm, grouped-query attention, half-split RoPE, per-head QK-RMSNorm before
RoPE (Qwen3), SwiGLU or exact GELU, tied or untied head.

Needs only torch and numpy (json and the safetensors layout by hand).
"""

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
}


def read_safetensors(path):
    """{name: numpy array}; BF16 is widened to float32 by hand (numpy lacks it)."""
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    data = raw[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        chunk = data[begin:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(chunk, dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = array.reshape(info["shape"])
    return tensors


def write_safetensors(path, tensors):
    """Float64 tensors, header padded with spaces to a multiple of 8 bytes."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        blob = np.ascontiguousarray(value, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(np.shape(value)), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Config:
    def __init__(self, hf):
        ours = hf.get("crucible", {})
        self.vocab = hf["vocab_size"]
        self.d_model = hf["hidden_size"]
        self.n_layers = hf["num_hidden_layers"]
        self.n_heads = hf["num_attention_heads"]
        self.n_kv_heads = hf.get("num_key_value_heads", self.n_heads)
        self.head_dim = hf.get("head_dim") or self.d_model // self.n_heads
        self.rope_theta = hf.get("rope_theta", 10000.0)
        self.eps = hf["rms_norm_eps"]
        self.tied = hf.get("tie_word_embeddings", False)
        self.qk_norm = hf.get("model_type") == "qwen3"
        self.layernorm = ours.get("norm", "rmsnorm") == "layernorm"
        self.gelu = ours.get("mlp", "swiglu") == "gelu"


class Reference:
    def __init__(self, config, weights):
        self.c = config
        # Leaf tensors in float64, so .grad holds d(loss)/d(weight).
        self.w = {name: torch.tensor(np.array(value, dtype=np.float64), requires_grad=True)
                  for name, value in weights.items()}

    def norm(self, x, prefix):
        weight = self.w[prefix + ".weight"]
        if self.c.layernorm:
            return F.layer_norm(x, (x.shape[-1],), weight, self.w[prefix + ".bias"], self.c.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c.eps) * weight

    def head_rms_norm(self, x, weight):
        # Qwen3's QK-norm: RMSNorm of each head over head_dim, one weight shared by all heads.
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c.eps) * weight

    def rope(self, x):
        # Hugging Face's rotate_half: pairs (i, i + D/2), angle = pos · theta^(-2i/D).
        seq, dim = x.shape[-2], x.shape[-1]
        inv_freq = 1.0 / (self.c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
        cos = torch.cat([angles, angles], dim=-1).cos()
        sin = torch.cat([angles, angles], dim=-1).sin()
        first, second = x[..., : dim // 2], x[..., dim // 2:]
        rotated = torch.cat([-second, first], dim=-1)
        return x * cos + rotated * sin

    def attention(self, x, p):
        c = self.c
        batch, seq, _ = x.shape
        q = (x @ self.w[p + "q_proj.weight"].T).view(batch, seq, c.n_heads, c.head_dim).transpose(1, 2)
        k = (x @ self.w[p + "k_proj.weight"].T).view(batch, seq, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = (x @ self.w[p + "v_proj.weight"].T).view(batch, seq, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if c.qk_norm:
            q = self.head_rms_norm(q, self.w[p + "q_norm.weight"])
            k = self.head_rms_norm(k, self.w[p + "k_norm.weight"])
        q, k = self.rope(q), self.rope(k)
        # GQA: query head h reads key/value head h // (H / KV).
        group = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        out = out.transpose(1, 2).reshape(batch, seq, c.n_heads * c.head_dim)
        return out @ self.w[p + "o_proj.weight"].T

    def mlp(self, x, p):
        up = x @ self.w[p + "up_proj.weight"].T
        if self.c.gelu:
            hidden = F.gelu(up)   # exact (erf) GELU
        else:
            hidden = F.silu(x @ self.w[p + "gate_proj.weight"].T) * up
        return hidden @ self.w[p + "down_proj.weight"].T

    def loss(self, tokens, targets):
        x = self.w["model.embed_tokens.weight"][tokens]
        for layer in range(self.c.n_layers):
            p = f"model.layers.{layer}."
            x = x + self.attention(self.norm(x, p + "input_layernorm"), p + "self_attn.")
            x = x + self.mlp(self.norm(x, p + "post_attention_layernorm"), p + "mlp.")
        x = self.norm(x, "model.norm")
        head = self.w["model.embed_tokens.weight" if self.c.tied else "lm_head.weight"]
        logits = x @ head.T
        return F.cross_entropy(logits.reshape(-1, self.c.vocab), targets.reshape(-1), ignore_index=-1)


def run(folder):
    folder = Path(folder)
    config = Config(json.loads((folder / "config.json").read_text()))
    weights = read_safetensors(folder / "model.safetensors")
    batch = read_safetensors(folder / "batch.safetensors")
    tokens = torch.tensor(batch["tokens"].astype(np.int64))
    targets = torch.tensor(batch["targets"].astype(np.int64))

    model = Reference(config, weights)
    loss = model.loss(tokens, targets)
    loss.backward()

    out = {"loss": np.array(loss.item())}
    for name, tensor in model.w.items():
        grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
        out[name] = grad.detach().numpy()
    write_safetensors(folder / "reference.safetensors", out)
    print(f"{folder.name}: loss {loss.item():.10f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: torch_reference.py FOLDER... (each with config.json, model.safetensors, batch.safetensors)")
    for argument in sys.argv[1:]:
        run(argument)
