#!/usr/bin/env python3
"""PyTorch peer for `crucible-cli bench generate`.

The same LLaMA-style model as Crucible (pre-norm RMSNorm, GQA, RoPE, SwiGLU,
tied head) with random weights, generating greedily from random prompts with
a static KV cache ([batch, kv_heads, context, head_dim] per layer, allocated
once), written as a PyTorch user would: fused qkv and gate/up projections,
F.rms_norm (a hand-written RMSNorm where this PyTorch has none), SDPA with
GQA. On CUDA the model runs in bf16 and the decode step (cache write,
attention over the whole static cache under a position mask, argmax) runs in
each of these modes (--modes):
  graph         the eager step captured once as a CUDA graph and replayed;
  compile       the step under torch.compile(mode="reduce-overhead",
                fullgraph=True): fused by Inductor and replayed as one CUDA
                graph, the gpt-fast recipe;
  max-autotune  the same with mode="max-autotune" (Inductor tunes its GEMMs).
On the CPU it runs eagerly in fp32 and attends over the filled part of the
cache only.

Prints one JSON object per mode: prefill tokens/s and, at each length L, the
decode rate (L - 1) * batch / (time from the first to the L-th token), the
same definition Crucible uses. The CLI compares Crucible with the fastest.

  torch_generate_bench.py --vocab 2048 --d-model 128 --layers 4 --heads 4 \\
      --kv-heads 2 --head-dim 32 --ff 384 --prompt 32 --lengths 64,128,256,512 --batch 1
"""
import argparse
import json
import os
import statistics
import sys
import time

# On the CPU, OpenMP teams wait passively (see torch_train_bench.py): on a
# machine whose cores anything else uses, spinning teams stall at every
# parallel region. An OMP_WAIT_POLICY already in the environment wins.
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
        if hasattr(F, "rms_norm"):   # PyTorch >= 2.4
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def sdpa_has_gqa():
    """Whether SDPA takes fewer kv heads than query heads (PyTorch >= 2.5)."""
    try:
        q = torch.zeros(1, 2, 1, 4)
        kv = torch.zeros(1, 1, 1, 4)
        F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
        return True
    except (TypeError, RuntimeError, AttributeError):
        return False


SDPA = hasattr(F, "scaled_dot_product_attention")   # PyTorch >= 2.0
SDPA_GQA = SDPA and sdpa_has_gqa()


def attend(q, keys, values, mask=None, causal=False):
    """softmax(q·kᵀ/√d + mask)·v; keys/values may have fewer heads (GQA)."""
    group = q.shape[1] // keys.shape[1]
    if group > 1 and not SDPA_GQA:
        keys = keys.repeat_interleave(group, dim=1)
        values = values.repeat_interleave(group, dim=1)
    if SDPA:
        extra = {"enable_gqa": True} if group > 1 else {}
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal, **extra)
    s = (q @ keys.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if causal:
        mask = torch.ones(q.shape[2], keys.shape[2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.float().softmax(-1).to(values.dtype) @ values


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.hd = a.heads, a.kv_heads, a.head_dim
        self.input_layernorm = RMSNorm(a.d_model)
        self.qkv = nn.Linear(a.d_model, (self.h + 2 * self.kv) * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, a.d_model, bias=False)
        self.post_attention_layernorm = RMSNorm(a.d_model)
        self.gate_up = nn.Linear(a.d_model, 2 * a.ff, bias=False)
        self.down_proj = nn.Linear(a.ff, a.d_model, bias=False)

    def forward(self, x, cos, sin, k_cache, v_cache, pos, limit, mask):
        """x [B, T, C] at positions pos (a tensor [T]); attends to cache[:, :, :limit]
        (limit an int) or, with `mask` [T, S], to the whole static cache under it."""
        B, T, _ = x.shape
        qkv = self.qkv(self.input_layernorm(x))
        q, k, v = qkv.split([self.h * self.hd, self.kv * self.hd, self.kv * self.hd], dim=-1)
        q = q.view(B, T, self.h, self.hd).transpose(1, 2)
        k = k.view(B, T, self.kv, self.hd).transpose(1, 2)
        v = v.view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k_cache.index_copy_(2, pos, k)
        v_cache.index_copy_(2, pos, v)
        keys = k_cache if mask is not None else k_cache[:, :, :limit]
        values = v_cache if mask is not None else v_cache[:, :, :limit]
        if mask is not None or T == 1:
            y = attend(q, keys, values, mask=mask)
        elif T == limit:
            y = attend(q, keys, values, causal=True)
        else:
            # Causal within the chunk: query t sits at position limit - T + t.
            y = attend(q, keys, values, mask=torch.ones(T, limit, dtype=torch.bool, device=x.device).tril(limit - T))
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, self.h * self.hd))
        gate, up = self.gate_up(self.post_attention_layernorm(x)).chunk(2, dim=-1)
        return x + self.down_proj(F.silu(gate) * up)


class Model(nn.Module):
    def __init__(self, a, context, device, dtype):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.d_model)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.d_model)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        self.to(device=device, dtype=dtype)
        inv = 1.0 / (10000.0 ** (torch.arange(0, a.head_dim, 2, device=device).double() / a.head_dim))
        angles = torch.outer(torch.arange(context, device=device).double(), inv)
        emb = torch.cat([angles, angles], dim=-1)
        # Tables and caches are buffers: torch.compile then treats them as
        # static state (the caches mutated in place by its CUDA graph).
        self.register_buffer("cos", emb.cos().to(dtype), persistent=False)
        self.register_buffer("sin", emb.sin().to(dtype), persistent=False)
        shape = (a.batch, a.kv_heads, context, a.head_dim)
        for layer in self.layers:
            layer.register_buffer("k_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
            layer.register_buffer("v_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("positions", torch.arange(context, device=device), persistent=False)

    def forward(self, tokens, pos, limit=None, mask=None):
        x = self.embed_tokens(tokens)
        cos, sin = self.cos[pos], self.sin[pos]
        for layer in self.layers:
            x = layer(x, cos, sin, layer.k_cache, layer.v_cache, pos, limit, mask)
        return F.linear(self.norm(x[:, -1]), self.embed_tokens.weight)


def measure(a, model, device):
    """One greedy generation; returns (prefill tokens/s, {length: decode tokens/s})."""
    prompt = torch.randint(0, a.vocab, (a.batch, a.prompt), device=device)
    lengths = sorted(a.lengths)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    logits = model(prompt, model.positions[: a.prompt], limit=a.prompt)
    token = logits.argmax(-1, keepdim=True)
    sync()
    reached = {1: time.perf_counter()}
    prefill = a.batch * a.prompt / (reached[1] - t0)
    step = a.decode_step(token)
    for i in range(2, lengths[-1] + 1):
        step(i)
        if i in lengths:
            sync()
            reached[i] = time.perf_counter()
    return prefill, {L: (L - 1) * a.batch / (reached[L] - reached[1]) for L in lengths}


def eager_decoder(a, model):
    def make(token):
        state = {"token": token}

        def step(i):
            p = a.prompt + i - 2   # position of the token drawn last
            logits = model(state["token"], model.positions[p:p + 1], limit=p + 1)
            state["token"] = logits.argmax(-1, keepdim=True)
        return step
    return make


def graph_decoder(a, model, context):
    """The decode step as one CUDA graph over static tensors."""
    static_token = torch.zeros((a.batch, 1), dtype=torch.long, device="cuda")
    static_pos = torch.zeros(1, dtype=torch.long, device="cuda")

    def body():
        mask = (model.positions <= static_pos).view(1, 1, 1, context)
        logits = model(static_token, static_pos, mask=mask)
        static_token.copy_(logits.argmax(-1, keepdim=True))
        static_pos.add_(1)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            body()   # warm-up: allocations and kernel selection happen outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()

    def make(token):
        static_token.copy_(token)
        static_pos.fill_(a.prompt)

        def step(i):
            graph.replay()
        return step
    return make


def compiled_decoder(a, model, context, mode):
    """The decode step under torch.compile: Inductor fuses it and, in these
    modes, replays it as one CUDA graph (gpt-fast's decode_one_token)."""
    def decode_one(token, pos):
        mask = (model.positions <= pos).view(1, 1, 1, context)
        logits = model(token, pos, mask=mask)
        return logits.argmax(-1, keepdim=True)

    step_fn = torch.compile(decode_one, mode=mode, fullgraph=True)
    token = torch.zeros((a.batch, 1), dtype=torch.long, device="cuda")
    pos = torch.zeros(1, dtype=torch.long, device="cuda")
    for i in range(3):   # compilation and graph recording stay outside the timing
        pos.fill_(i)
        token = step_fn(token, pos).clone()
    torch.cuda.synchronize()

    def make(first):
        state = {"token": first, "pos": torch.full((1,), a.prompt, dtype=torch.long, device="cuda")}

        def step(i):
            state["token"] = step_fn(state["token"], state["pos"]).clone()
            state["pos"] += 1
        return step
    return make


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("vocab", 2048), ("d-model", 128), ("layers", 4), ("heads", 4), ("kv-heads", 2),
                          ("head-dim", 0), ("ff", 384), ("batch", 1), ("prompt", 32), ("repeats", 3),
                          ("threads", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--lengths", default="64,128,256,512")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--modes", default="", help="CUDA: graph,compile,max-autotune (the default: all); CPU: eager")
    a = p.parse_args()
    a.lengths = [int(x) for x in a.lengths.split(",")]
    a.head_dim = a.head_dim or a.d_model // a.heads
    if a.device == "cpu":
        torch.set_num_threads(a.threads or os.cpu_count() or 1)
    modes = [m for m in (a.modes or ("graph,compile,max-autotune" if a.device == "cuda" else "eager")).split(",") if m]
    torch.manual_seed(0)
    context = a.prompt + max(a.lengths)
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    with torch.no_grad():
        model = Model(a, context, a.device, dtype)
    for mode in modes:
        row = {"peer": "pytorch " + torch.__version__, "mode": mode, "device": a.device, "batch": a.batch,
               "threads": torch.get_num_threads() if a.device == "cpu" else None}
        try:
            with torch.no_grad():
                if mode == "eager":
                    a.decode_step = eager_decoder(a, model)
                elif a.device != "cuda":
                    raise RuntimeError(f"mode {mode} needs --device cuda")
                elif mode == "graph":
                    a.decode_step = graph_decoder(a, model, context)
                elif mode in ("compile", "max-autotune"):
                    if not hasattr(torch, "compile"):
                        raise RuntimeError("this PyTorch has no torch.compile")
                    a.decode_step = compiled_decoder(a, model, context,
                                                     "reduce-overhead" if mode == "compile" else "max-autotune")
                else:
                    raise RuntimeError(f"unknown mode {mode}")
                measure(a, model, a.device)   # warm-up
                runs = [measure(a, model, a.device) for _ in range(max(a.repeats, 1))]
            row.update(prefill_tokens_per_s=statistics.median(r[0] for r in runs),
                       points=[{"length": L, "decode_tokens_per_s": statistics.median(r[1][L] for r in runs)}
                               for L in sorted(a.lengths)])
        except Exception as e:  # a mode this PyTorch or GPU cannot run is reported, not fatal
            row["error"] = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
