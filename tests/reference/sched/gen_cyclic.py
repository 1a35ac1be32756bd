#!/usr/bin/python3
"""gen_cyclic.py - golden vectors of the cyclic schedules (tests/reference/sched/).

    /usr/bin/python3 tests/reference/sched/gen_cyclic.py [OUT_DIR]

Writes cosine_restarts*.txt, one_cycle*.txt and cyclic*.txt in the format
of tests/reference/README.md ("sched/*.txt"). Every value after the warmup
is what torch.optim.lr_scheduler (Debian's python3-torch) gives, in float64
(Python floats), stepping the scheduler once per update: lr(k) of SPEC is
torch's rate at last_epoch = j = k - warmup_steps. The warmup is SPEC's
linear ramp, computed here. one_cycle's tail (j >= L = max_steps -
warmup_steps, where torch refuses to step) is SPEC's final rate
lr/div_factor/final_div_factor. Each case is cross-checked against a
second, plain transcription of SPEC's formulas (max relative difference
must stay below 1e-12). momentum cycling is off (cycle_momentum=False):
dtrain does not cycle momentum.
"""
import math
import os
import sys

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def torch_rates(make, count, lr):
    """Rates at last_epoch = 0 .. count-1 of the scheduler make(optimizer),
    the optimizer's lr (the base of CosineAnnealingWarmRestarts) being lr."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(count):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if len(out) < count:
            sched.step()
    return out


# ---- a second transcription of the formulas (plain loops, SPEC's words) ----
def spec_cosine_restarts(c, j):
    t_cur, t_i = j, c["period"]
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= c["period_mult"]
    lo = c["min_lr"]
    return lo + (c["lr"] - lo) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def spec_one_cycle(c, j):
    L = c["max_steps"] - c["warmup_steps"]
    top = c["lr"]
    initial = top / c["div_factor"]
    final = initial / c["final_div_factor"]
    if j > L - 1:
        return final
    p = c["pct_start"]
    if c["three_phase"]:
        phases = [(p * L - 1, initial, top), (2 * p * L - 2, top, initial), (L - 1, initial, final)]
    else:
        phases = [(p * L - 1, initial, top), (L - 1, top, final)]
    start = 0
    for i, (end, a, b) in enumerate(phases):
        if j <= end or i == len(phases) - 1:
            pct = (j - start) / (end - start)
            if c["anneal_strategy"] == "linear":
                return a + (b - a) * pct
            return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2
        start = end
    raise AssertionError


def spec_cyclic(c, j):
    up, down = c["step_size_up"], c["step_size_down"]
    cycle = j // (up + down)  # 0-based cycle
    pos = j - cycle * (up + down)
    frac = pos / up if pos <= up else 1 - (pos - up) / down
    height = (c["max_lr"] - c["lr"]) * frac
    scale = {"triangular": 1.0, "triangular2": 0.5 ** cycle, "exp_range": c["gamma"] ** j}[c["mode"]]
    return c["lr"] + height * scale


def torch_after_warmup(c, count):
    name = c["scheduler"]
    if name == "cosine_restarts":
        make = lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            o, T_0=c["period"], T_mult=c["period_mult"], eta_min=c["min_lr"])
        return torch_rates(make, count, c["lr"])
    if name == "one_cycle":
        L = c["max_steps"] - c["warmup_steps"]
        make = lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=c["lr"], total_steps=L, pct_start=c["pct_start"],
            anneal_strategy=c["anneal_strategy"], div_factor=c["div_factor"],
            final_div_factor=c["final_div_factor"], three_phase=bool(c["three_phase"]),
            cycle_momentum=False)
        head = torch_rates(make, min(count, L), c["lr"])
        final = c["lr"] / c["div_factor"] / c["final_div_factor"]
        return head + [final] * (count - len(head))
    if name == "cyclic":
        make = lambda o: torch.optim.lr_scheduler.CyclicLR(
            o, base_lr=c["lr"], max_lr=c["max_lr"], step_size_up=c["step_size_up"],
            step_size_down=c["step_size_down"], mode=c["mode"], gamma=c["gamma"],
            cycle_momentum=False)
        return torch_rates(make, count, c["lr"])
    raise ValueError(name)


SPEC = {"cosine_restarts": spec_cosine_restarts, "one_cycle": spec_one_cycle, "cyclic": spec_cyclic}
KEYS = {
    "cosine_restarts": ["period", "period_mult", "min_lr"],
    "one_cycle": ["max_steps", "pct_start", "div_factor", "final_div_factor", "anneal_strategy",
                  "three_phase"],
    "cyclic": ["max_lr", "step_size_up", "step_size_down", "mode", "gamma"],
}
CHECKS = {
    "cosine_restarts": "torch.CosineAnnealingWarmRestarts",
    "one_cycle": "torch.OneCycleLR (j < max_steps - warmup_steps)",
    "cyclic": "torch.CyclicLR",
}

CASES = [
    dict(case="cosine_restarts", scheduler="cosine_restarts", lr=0.1, warmup_steps=0,
         warmup_begin_lr=0.0, period=7, period_mult=1, min_lr=0.001, count=30),
    dict(case="cosine_restarts_mult2_warmup", scheduler="cosine_restarts", lr=0.2, warmup_steps=5,
         warmup_begin_lr=0.01, period=4, period_mult=2, min_lr=0.0, count=70),
    dict(case="cosine_restarts_mult3", scheduler="cosine_restarts", lr=0.05, warmup_steps=0,
         warmup_begin_lr=0.0, period=3, period_mult=3, min_lr=0.002, count=45),
    dict(case="one_cycle_cos", scheduler="one_cycle", lr=0.4, warmup_steps=0, warmup_begin_lr=0.0,
         max_steps=40, pct_start=0.3, div_factor=25.0, final_div_factor=10000.0,
         anneal_strategy="cos", three_phase=0, count=45),
    dict(case="one_cycle_linear_three_warmup", scheduler="one_cycle", lr=0.1, warmup_steps=6,
         warmup_begin_lr=0.0, max_steps=50, pct_start=0.25, div_factor=10.0,
         final_div_factor=100.0, anneal_strategy="linear", three_phase=1, count=55),
    dict(case="one_cycle_three_fractional", scheduler="one_cycle", lr=0.3, warmup_steps=0,
         warmup_begin_lr=0.0, max_steps=31, pct_start=0.37, div_factor=25.0,
         final_div_factor=10000.0, anneal_strategy="cos", three_phase=1, count=36),
    dict(case="cyclic_triangular", scheduler="cyclic", lr=0.01, warmup_steps=0, warmup_begin_lr=0.0,
         max_lr=0.1, step_size_up=5, step_size_down=5, mode="triangular", gamma=1.0, count=40),
    dict(case="cyclic_triangular2_warmup", scheduler="cyclic", lr=0.05, warmup_steps=3,
         warmup_begin_lr=0.0, max_lr=0.3, step_size_up=4, step_size_down=6, mode="triangular2",
         gamma=1.0, count=50),
    dict(case="cyclic_exp_range", scheduler="cyclic", lr=0.001, warmup_steps=0,
         warmup_begin_lr=0.0, max_lr=0.01, step_size_up=6, step_size_down=3, mode="exp_range",
         gamma=0.97, count=45),
]


def fmt_header(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def main():
    for c in CASES:
        W, b, base, count = c["warmup_steps"], c["warmup_begin_lr"], c["lr"], c["count"]
        tail = torch_after_warmup(c, count - W)
        rates = [b + (base - b) * k / W for k in range(W)] + tail
        worst = 0.0
        for j, v in enumerate(tail):
            ref = SPEC[c["scheduler"]](c, j)
            worst = max(worst, abs(ref - v) / abs(v))
        assert worst < 1e-12, (c["case"], worst)
        lines = [
            "# dtrain golden reference vectors -- learning-rate schedule (case %s)" % c["case"],
            "# Generated in float64 by tests/reference/sched/gen_cyclic.py; format: reference/README.md",
            "# lr k v: the rate lr(k) used for update t = k+1 (k = updates already applied).",
            "# Values after the warmup: %s, stepped once per update; cross-checked against a plain "
            "transcription of SPEC (max rel diff %.1e)." % (CHECKS[c["scheduler"]], worst),
            "kind: sched",
            "case: %s" % c["case"],
        ]
        for k in ["scheduler", "lr", "warmup_steps", "warmup_begin_lr"] + KEYS[c["scheduler"]] + ["count"]:
            lines.append("%s: %s" % (k, fmt_header(c[k])))
        lines += ["lr %d %.17g" % (k, v) for k, v in enumerate(rates)]
        with open(os.path.join(OUT, c["case"] + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("%-32s %3d rates, torch vs transcription %.1e" % (c["case"], count, worst))


if __name__ == "__main__":
    main()
