#!/usr/bin/env python3
"""gen_safetensors_seeds.py OUTDIR - the seed corpus of fuzz_safetensors.

Each seed is the harness's input: a mode byte (fuzz_safetensors.c), then
either the file's bytes (bit 0 clear) or HEADER NUL DATA (bit 0 set). The
files are those of the model the harness checks against (0.weight [3, 2],
0.bias [3], 2.weight [1, 3], 2.bias [1]): as dtrain writes them, as another
writer may lay them out, and broken one way each.
"""
import json
import os
import struct
import sys

MODEL = [("0.weight", [3, 2]), ("0.bias", [3]), ("2.weight", [1, 3]), ("2.bias", [1])]


def header_and_data(tensors, meta=None, dtype="F32", pad=True, sep=(",", ":")):
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(h, separators=sep).encode()
    if pad:
        text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return text, data


def values(shape, base):
    n = 1
    for d in shape:
        n *= d
    return [base + 0.25 * i for i in range(n)]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model = [(n, s, values(s, i)) for i, (n, s) in enumerate(MODEL)]
    seeds = {}
    text, data = header_and_data(model, {"format": "pt", "step": "40"})
    whole = struct.pack("<Q", len(text)) + text + data
    seeds["ok_model_raw"] = bytes([2 | 4]) + whole
    seeds["ok_model_header_mode"] = bytes([1 | 2 | 4]) + text + b"\0" + data
    t2, d2 = header_and_data(list(reversed(model)), None, pad=False, sep=(", ", ": "))
    seeds["ok_reversed_no_metadata"] = bytes([1 | 2 | 4]) + t2 + b"\0" + d2
    t3, d3 = header_and_data(model[:3], {"a": "\u00e9\n"})
    seeds["missing_tensor"] = bytes([1 | 2 | 4]) + t3 + b"\0" + d3
    t4, d4 = header_and_data(model, None, dtype="F16")
    seeds["f16"] = bytes([1 | 2]) + t4 + b"\0" + d4[: len(d4) // 2]
    nan = [(n, s, [float("nan")] + v[1:]) for n, s, v in model]
    t5, d5 = header_and_data(nan)
    seeds["nan_value"] = bytes([1 | 2 | 4]) + t5 + b"\0" + d5
    seeds["truncated"] = bytes([2]) + whole[:-5]
    seeds["empty_object"] = bytes([1 | 4]) + b"{}\0"
    seeds["scalar_and_empty"] = bytes([1 | 4]) + json.dumps(
        {"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
         "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]}}).encode() + b"\0" + struct.pack("<f", 2.5)
    for name, blob in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
