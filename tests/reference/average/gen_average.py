#!/usr/bin/python3
"""gen_average.py - golden vectors of path averaging (tests/reference/average/).

    /usr/bin/python3 tests/reference/average/gen_average.py [OUT_DIR]

Each case is a fixed trajectory of parameters w_1 .. w_T (a noisy descent,
every value exactly representable in float32, some coordinates 0) and the
averaged copy torch.optim.swa_utils.AveragedModel keeps of it in float64
when update_parameters is called after every update t > start:
  swa: AveragedModel's default avg_fn, avg + (w - avg) / (n + 1)
  ema: avg_fn = decay * avg + (1 - decay) * w
(the first call copies, for both). A plain-loop transcription of the same
rules cross-checks every value (max abs difference must stay below 1e-15).
Format: tests/reference/README.md ("average/*.txt").
"""
import os
import sys

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

CASES = [
    dict(case="ema_decay09", average="ema", decay=0.9, start=0, n=6, steps=12, seed=1),
    dict(case="ema_decay075_start3", average="ema", decay=0.75, start=3, n=5, steps=12, seed=2),
    dict(case="ema_decay0999", average="ema", decay=0.999, start=0, n=4, steps=10, seed=3),
    dict(case="swa_start0", average="swa", decay=None, start=0, n=7, steps=10, seed=4),
    dict(case="swa_start4", average="swa", decay=None, start=4, n=4, steps=14, seed=5),
]


class Flat(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))


def trajectory(c):
    """w_1..w_T: a descent towards a target with shrinking noise, rounded to
    float32 (the values a float32 trainer holds); coordinate 0 stays 0."""
    rng = np.random.default_rng(c["seed"])
    target = rng.uniform(-1, 1, c["n"])
    w = rng.uniform(-2, 2, c["n"])
    w[0] = target[0] = 0.0
    out = []
    for t in range(1, c["steps"] + 1):
        w = w + 0.3 * (target - w) + rng.normal(0, 0.5 / t, c["n"])
        w[0] = 0.0
        w = w.astype(np.float32).astype(np.float64)
        out.append(w.copy())
    return out


def torch_average(c, ws):
    model = Flat(c["n"])
    if c["average"] == "ema":
        d = c["decay"]
        avg = AveragedModel(model, avg_fn=lambda a, w, n: d * a + (1 - d) * w)
    else:
        avg = AveragedModel(model)
    out = {}
    with torch.no_grad():
        for t, w in enumerate(ws, start=1):
            model.w.copy_(torch.from_numpy(w))
            if t > c["start"]:
                avg.update_parameters(model)
                out[t] = avg.module.w.detach().numpy().copy()
    return out


def plain_average(c, ws):
    a, n, out = None, 0, {}
    for t, w in enumerate(ws, start=1):
        if t <= c["start"]:
            continue
        if n == 0:
            a = [float(x) for x in w]
        elif c["average"] == "ema":
            a = [c["decay"] * ai + (1 - c["decay"]) * wi for ai, wi in zip(a, w)]
        else:
            a = [ai + (wi - ai) / (n + 1) for ai, wi in zip(a, w)]
        n += 1
        out[t] = a
    return out


def row(label, t, v):
    return "%s %d %s" % (label, t, " ".join("%.17g" % x for x in v))


def main():
    for c in CASES:
        ws = trajectory(c)
        ref = torch_average(c, ws)
        plain = plain_average(c, ws)
        diff = max(abs(a - b) for t in ref for a, b in zip(ref[t], plain[t]))
        assert diff < 1e-15, (c["case"], diff)
        lines = [
            "# dtrain golden reference vectors -- path averaging (case %s)" % c["case"],
            "# Generated in float64 by tests/reference/average/gen_average.py with "
            "torch.optim.swa_utils.AveragedModel; format: reference/README.md",
            "# param t: the parameters after update t (given); avg t: the averaged copy after "
            "update t, for t > start.",
            "# Cross-checked against a plain-loop transcription (max abs diff %.1e)." % diff,
            "kind: average",
            "case: %s" % c["case"],
            "average: %s" % c["average"],
        ]
        if c["average"] == "ema":
            lines.append("decay: %r" % c["decay"])
        lines += ["start: %d" % c["start"], "n: %d" % c["n"], "steps: %d" % c["steps"]]
        for t, w in enumerate(ws, start=1):
            lines.append(row("param", t, w))
            if t in ref:
                lines.append(row("avg", t, ref[t]))
        with open(os.path.join(OUT, c["case"] + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("%-22s n=%d T=%d start=%d  torch vs plain loop %.1e" % (
            c["case"], c["n"], c["steps"], c["start"], diff))


if __name__ == "__main__":
    main()
