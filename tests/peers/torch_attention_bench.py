#!/usr/bin/env python3
"""PyTorch peer for `crucible-cli bench attention`.

Times causal self-attention in bf16 through scaled_dot_product_attention,
with PyTorch's own backend choice ("default", what a user gets) and with each
backend forced in turn ("cudnn", "flash", "efficient"), on the shapes
Crucible's benchmark uses:
head dims × sequence lengths at B·T tokens per call and H = model_dim / D
heads. q, k and v are views of one packed projection output [B, T, 3, H, D],
as a model produces them (--layout packed), or contiguous [B, H, T, D]
tensors, SDPA's usual benchmark setting (--layout bhtd, the default). Prints
one JSON object per shape and backend with the same keys as Crucible's table
(label "D<d> T<t>", backend, fwd_ms, fwd_tflops, fwdbwd_ms, fwdbwd_tflops), so
the CLI can set Crucible against the fastest backend of each shape. A backend
that cannot run a shape (or this PyTorch has no switch for) reports "error".

FLOPs are counted as FlashAttention reports them: 4·B·H·T²·D / 2 for the
causal forward, 2.5× that for the backward. Times are medians of CUDA-event
timed samples after warm-up.

  torch_attention_bench.py --head-dims 64,128 --seqs 1024,2048,4096,8192
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F


BACKENDS = ["default", "cudnn", "flash", "efficient"]


def sdpa(backend):
    """SDPA under one backend ("default": PyTorch chooses)."""
    if backend == "default":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # PyTorch < 2.3: only flash and efficient can be forced
        if backend == "cudnn":
            raise RuntimeError("this PyTorch cannot force the cuDNN backend")

        def old(q, k, v):
            with torch.backends.cuda.sdp_kernel(enable_flash=backend == "flash", enable_math=False,
                                                enable_mem_efficient=backend == "efficient"):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return old
    which = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]

    def forced(q, k, v):
        with sdpa_kernel(which):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return forced


def time_ms(fn, warmup, repeats):
    """Median ms of one call; each sample runs enough calls to last ~2 ms."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    inner = max(1, min(50, int(2.0 / max(start.elapsed_time(end), 1e-3)) + 1))
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / inner)
    return statistics.median(samples)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head-dims", default="64,128")
    p.add_argument("--seqs", default="1024,2048,4096,8192")
    p.add_argument("--tokens", type=int, default=32768, help="B·T per call")
    p.add_argument("--model-dim", type=int, default=2048, help="H = model_dim / D")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--layout", default="bhtd", choices=["bhtd", "packed"])
    p.add_argument("--backends", default=",".join(BACKENDS), help="of " + ", ".join(BACKENDS))
    a = p.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device for PyTorch"}))
        return 1
    torch.manual_seed(0)
    dev = torch.device("cuda")
    for d in [int(x) for x in a.head_dims.split(",")]:
        for t in [int(x) for x in a.seqs.split(",")]:
            b, h = max(1, a.tokens // t), max(1, a.model_dim // d)
            if a.layout == "packed":
                qkv = torch.randn(b, t, 3, h, d, device=dev, dtype=torch.bfloat16)
                q, k, v = (qkv[:, :, i].transpose(1, 2).detach().requires_grad_(True) for i in range(3))
            else:
                qkv = torch.randn(3, b, h, t, d, device=dev, dtype=torch.bfloat16)
                q, k, v = (qkv[i].clone().requires_grad_(True) for i in range(3))
            dout = torch.randn(b, h, t, d, device=dev, dtype=torch.bfloat16)

            flops = 4.0 * b * h * t * t * d / 2.0
            for backend in a.backends.split(","):
                row = {"peer": "pytorch-sdpa (" + a.layout + ")", "backend": backend, "torch": torch.__version__,
                       "label": f"D{d} T{t}", "head_dim": d, "seq": t, "batch": b, "heads": h}
                try:
                    attend = sdpa(backend)

                    def fwd():
                        with torch.no_grad():
                            attend(q, k, v)

                    def fwd_bwd():
                        out = attend(q, k, v)
                        torch.autograd.grad(out, (q, k, v), dout)

                    f_ms = time_ms(fwd, a.warmup, a.repeats)
                    fb_ms = time_ms(fwd_bwd, a.warmup, a.repeats)
                    row.update(fwd_ms=f_ms, fwd_tflops=flops / (f_ms * 1e-3) / 1e12,
                               fwdbwd_ms=fb_ms, fwdbwd_tflops=3.5 * flops / (fb_ms * 1e-3) / 1e12)
                except RuntimeError as e:  # e.g. no kernel of this backend for this head dim or GPU
                    row["error"] = (str(e).strip().splitlines() or ["failed"])[0]
                print(json.dumps(row), flush=True)
            del qkv, q, k, v, dout
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
