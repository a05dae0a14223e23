#!/usr/bin/env python3
"""PyTorch peer for `crucible-cli bench train`.

Builds the same LLaMA-style model as Crucible (pre-norm RMSNorm, GQA, RoPE,
SwiGLU, tied head), trains it on random tokens with the same batch shape and
prints one JSON object per configuration: tokens/s, ms/step (median, min, max)
and peak memory. Runs on the CPU (PyTorch >= 1.13) or on CUDA (bf16 autocast,
fused AdamW, SDPA, optionally torch.compile).

  torch_train_bench.py --vocab 2048 --d-model 128 --layers 4 --heads 4 \
      --kv-heads 2 --ff 384 --batch 16 --seq 128 --threads 1,2
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

# On the CPU, OpenMP teams wait passively: on a machine whose cores are
# shared with anything else, spinning threads wait for a descheduled team
# mate at every parallel region (measured on a busy 2-core machine: 2 threads
# ran 4-5x faster passive). Set before torch loads its OpenMP runtime; an
# OMP_WAIT_POLICY already in the environment wins.
if "--device" not in sys.argv or sys.argv[sys.argv.index("--device") + 1:][:1] != ["cuda"]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # Upcast like Hugging Face Llama does, so bf16 runs stay stable.
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope_tables(seq, head_dim, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    freqs = torch.outer(torch.arange(seq, device=device).float(), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.hd = a.heads, a.kv_heads, a.d_model // a.heads
        self.input_layernorm = RMSNorm(a.d_model)
        self.q_proj = nn.Linear(a.d_model, self.h * self.hd, bias=False)
        self.k_proj = nn.Linear(a.d_model, self.kv * self.hd, bias=False)
        self.v_proj = nn.Linear(a.d_model, self.kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, a.d_model, bias=False)
        self.post_attention_layernorm = RMSNorm(a.d_model)
        self.gate_proj = nn.Linear(a.d_model, a.ff, bias=False)
        self.up_proj = nn.Linear(a.d_model, a.ff, bias=False)
        self.down_proj = nn.Linear(a.ff, a.d_model, bias=False)
        self.has_sdpa = hasattr(F, "scaled_dot_product_attention")

    def attention(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        if self.has_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.h * self.hd))

    def forward(self, x, cos, sin):
        x = x + self.attention(self.input_layernorm(x), cos, sin)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.d_model)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.d_model)
        self.hd = a.d_model // a.heads
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets, cos, sin):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = F.linear(self.norm(x), self.embed_tokens.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def newton_schulz(g, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for hidden matrices (eager PyTorch), as core/optim/optimizer.h describes."""

    def __init__(self, params, lr=0.02, momentum=0.95):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                u = p.grad.add(buf, alpha=group["momentum"])
                o = newton_schulz(u)
                scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5
                p.add_(o, alpha=-group["lr"] * scale)


def make_optimizer(model, a, device):
    fused = {"fused": True} if device == "cuda" else {}
    if a.optimizer == "adamw":
        return [torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, **fused)]
    hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    return [Muon(hidden), torch.optim.AdamW(other, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0, **fused)]


def run(a, threads, mode):
    device = a.device
    if device == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Model(a).to(device)
    opts = make_optimizer(model, a, device)
    cos, sin = rope_tables(a.seq, a.d_model // a.heads, 10000.0, device)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=device)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    fwd = torch.compile(model) if mode == "compiled" else model

    def step():
        for o in opts:
            o.zero_grad(set_to_none=True)
        if device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(x, y, cos, sin)
        else:
            loss = fwd(x, y, cos, sin)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for o in opts:
            o.step()
        return loss

    for _ in range(a.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    # CPU time over wall time per thread. With one thread, well under 1 means
    # the machine took the core away and the wall-clock rate understates this
    # peer; with more, passive waiting lowers it as well.
    cpu_share = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9) / max(threads, 1)
    med = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "peer": "pytorch " + torch.__version__ + (" " + mode if device == "cuda" else ""),
        "device": device, "threads": threads if device == "cpu" else None, "optimizer": a.optimizer,
        "tokens_per_s": a.batch * a.seq / (med / 1e3), "ms_per_step": med,
        "ms_min": min(times), "ms_max": max(times), "peak_bytes": peak,
        "cpu_share": cpu_share if device == "cpu" else None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("vocab", 2048), ("d-model", 128), ("layers", 4), ("heads", 4), ("kv-heads", 2),
                          ("ff", 384), ("batch", 16), ("seq", 128), ("steps", 10), ("warmup", 3)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--threads", default="1,2", help="CPU thread counts to try")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--modes", default="eager", help="cuda: eager,compiled")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
    a = p.parse_args()
    if a.device == "cuda":
        for mode in a.modes.split(","):
            print(json.dumps(run(a, 0, mode)), flush=True)
    else:
        for t in a.threads.split(","):
            print(json.dumps(run(a, int(t), "eager")), flush=True)


if __name__ == "__main__":
    sys.exit(main())
