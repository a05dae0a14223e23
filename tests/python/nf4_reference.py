#!/usr/bin/python3
"""NF4 reference, written from bitsandbytes' definition of its storage.

For each FOLDER: reads input.safetensors ("weights", F32 [n], and
"double_quant", F32 [1]) and writes reference.safetensors with "packed"
(the bytes, element 2j in the high nibble), "absmax" (per block of 64) or,
with double quantization, "absmax_codes" (per block, into the signed dynamic
8-bit code), "absmax_scales" (per block of 256) and "absmax_mean", plus
"dequantized" and "code" (the dynamic map), all as F64.

The dynamic map is built the way bitsandbytes' create_dynamic_map(signed=True)
builds it, with torch in float32.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import read_safetensors, write_safetensors  # noqa: E402

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)


def dynamic_map():
    data = []
    max_exponent_bits, non_sign_bits = 7, 7
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return np.array(data, dtype=np.float32)


def nearest(values, table):
    """Index of the nearest entry of an ascending table; ties to the lower."""
    out = np.empty(len(values), dtype=np.int64)
    for k, x in enumerate(values):
        d = np.abs(table.astype(np.float32) - np.float32(x))
        out[k] = int(np.flatnonzero(d == d.min())[0])
    return out


def run(folder):
    folder = Path(folder)
    data = read_safetensors(folder / "input.safetensors")
    w = data["weights"].astype(np.float32)
    double_quant = bool(data["double_quant"][0])
    n = len(w)
    blocks = (n + 63) // 64
    absmax = np.array([np.abs(w[b * 64:(b + 1) * 64]).max() for b in range(blocks)], dtype=np.float32)
    idx = np.zeros(n, dtype=np.int64)
    for b in range(blocks):
        a = absmax[b]
        inv = np.float32(1.0) / a if a > 0 else np.float32(0.0)
        idx[b * 64:(b + 1) * 64] = nearest(w[b * 64:(b + 1) * 64] * inv, NF4)
    padded = np.concatenate([idx, np.zeros(n % 2, dtype=np.int64)])
    packed = (padded[0::2] << 4) | padded[1::2]
    out = {"packed": packed.astype(np.float64), "code": dynamic_map().astype(np.float64)}
    if double_quant:
        code = dynamic_map()
        mean = np.float32(absmax.astype(np.float64).mean())
        centred = absmax - mean
        groups = (blocks + 255) // 256
        scales = np.array([np.abs(centred[g * 256:(g + 1) * 256]).max() for g in range(groups)], dtype=np.float32)
        codes = np.zeros(blocks, dtype=np.int64)
        for g in range(groups):
            inv = np.float32(1.0) / scales[g] if scales[g] > 0 else np.float32(0.0)
            codes[g * 256:(g + 1) * 256] = nearest(centred[g * 256:(g + 1) * 256] * inv, code)
        used = code[codes] * np.repeat(scales, 256)[:blocks] + mean
        out.update({"absmax_codes": codes.astype(np.float64), "absmax_scales": scales.astype(np.float64),
                    "absmax_mean": np.array([mean], dtype=np.float64)})
    else:
        used = absmax
        out["absmax"] = absmax.astype(np.float64)
    out["dequantized"] = (NF4[idx] * np.repeat(used.astype(np.float32), 64)[:n]).astype(np.float64)
    write_safetensors(folder / "reference.safetensors", out)
    print(f"{folder.name}: {n} weights")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        run(argument)
