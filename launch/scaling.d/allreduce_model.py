#!/usr/bin/python3
"""allreduce_model.py - alpha-beta model of dtrain's gradient allreduce on the
simulated 16 x 8 clusters: ring vs recursive doubling vs Rabenseifner
(reduce-scatter by recursive halving + allgather by recursive doubling).

  launch/scaling.d/allreduce_model.py [--config CONFIG.yaml | --params N]
        [--platform fast --platform commodity] [--ranks 1..128] [--out DIR]
        [--measured scaling.csv ...]

The gradient is N float32 values (n = 4N bytes), N taken from
`dtrain --check CONFIG` or --params. Network parameters come from the
SimGrid platform files in launch/platforms (the <cluster> element):
  inter-node  alpha = 2 * NIC latency + switch latency, beta = 1 / NIC bandwidth
  intra-node  alpha, beta of the loopback (shared memory) link
Ranks are placed 8 per node in order (launch/platforms/hostfile_16x8). A
message between ranks r and r xor d (or r+1 in the ring) stays inside the
node when both are on the same node. When a round crosses nodes, every rank
of a node sends at once through the node's one NIC, so that round's
bandwidth term is multiplied by the ranks per node taking part (the ring
has only one rank per node sending off-node per step, so its rounds cost the
slower of the two links). Costs (gamma = reduction arithmetic, 0 by default
like SMPI, which does not charge it):
  ring               2(P-1) rounds of n/P bytes
  recursive doubling log2 P rounds of n bytes (full vector each round)
  Rabenseifner       2 log2 P rounds: n/2, n/4, ... then back up
P that are not powers of two are rounded up (the extra ranks' pre-step is
ignored). Writes allreduce_model.csv and allreduce_model.png (gnuplot).
With --measured, the `communication_ms` column of launch/scaling's
scaling.csv files (SMPI runs: exposed communication per update, including
waiting for slower ranks) is drawn next to the model.
"""
import argparse
import csv
import math
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLATFORMS = os.path.join(ROOT, "launch", "platforms")
UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def bandwidth(s):
    """SimGrid bandwidth string -> bytes/s ('100Gbps' = 12.5e9, '20GBps' = 20e9)."""
    m = re.fullmatch(r"([0-9.eE+-]+)\s*([kKMGT]?)([bB])ps", s.strip())
    if not m:
        raise ValueError(f"bandwidth '{s}'")
    v = float(m.group(1)) * UNITS[m.group(2)]
    return v / 8 if m.group(3) == "b" else v


def latency(s):
    m = re.fullmatch(r"([0-9.eE+-]+)\s*(s|ms|us|ns)?", s.strip())
    if not m:
        raise ValueError(f"latency '{s}'")
    return float(m.group(1)) * {"s": 1, None: 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[m.group(2)]


def read_platform(name):
    path = name if os.path.exists(name) else os.path.join(PLATFORMS, f"cluster_16x8_{name}.xml")
    text = open(path).read()
    c = re.search(r"<cluster\b(.*?)/>", text, re.S).group(1)
    a = dict(re.findall(r'(\w+)="([^"]*)"', c))
    return {
        "name": os.path.basename(path).replace("cluster_16x8_", "").replace(".xml", ""),
        "cores": int(a.get("core", 1)),
        "alpha_net": 2 * latency(a["lat"]) + latency(a.get("bb_lat", "0")),
        "beta_net": 1 / bandwidth(a["bw"]),
        "alpha_shm": latency(a.get("loopback_lat", "0")),
        "beta_shm": 1 / bandwidth(a.get("loopback_bw", "1TBps")),
    }


def model(net, P, n, gamma=0.0):
    """Seconds for an allreduce of n bytes over P ranks, three algorithms."""
    if P == 1:
        return {"ring": 0.0, "recursive_doubling": 0.0, "rabenseifner": 0.0}
    c = net["cores"]
    per_node = min(P, c)
    steps = math.ceil(math.log2(P))
    Pp = 2 ** steps
    # ring: neighbour r -> r+1; with P > c one rank per node sends off-node
    chunk = n / P
    shm = net["alpha_shm"] + chunk * net["beta_shm"]
    inter = net["alpha_net"] + chunk * net["beta_net"]
    ring = 2 * (P - 1) * (max(shm, inter) if P > c else shm) + (P - 1) * chunk * gamma
    # recursive doubling: partner r xor 2^k; rounds with 2^k >= c leave the node
    rd = 0.0
    for k in range(steps):
        d = 2 ** k
        if d < c:
            rd += net["alpha_shm"] + n * net["beta_shm"]
        else:
            rd += net["alpha_net"] + per_node * n * net["beta_net"]
        rd += n * gamma
    # Rabenseifner: reduce-scatter with distances Pp/2, Pp/4, ..., 1 and sizes
    # n/2, n/4, ...; the allgather mirrors it
    rab = 0.0
    for k in range(steps):
        d = Pp // 2 ** (k + 1)
        m = n / 2 ** (k + 1)
        if d < c:
            t = net["alpha_shm"] + m * net["beta_shm"]
        else:
            t = net["alpha_net"] + per_node * m * net["beta_net"]
        rab += 2 * t + m * gamma
    return {"ring": ring, "recursive_doubling": rd, "rabenseifner": rab}


def param_count(args):
    if args.params:
        return args.params
    binary = args.dtrain
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run([binary, "--check", args.config], capture_output=True, text=True, env=env, timeout=120)
    m = re.search(r"(\d+) parameters", p.stdout + p.stderr)
    if not m:
        sys.exit(f"allreduce_model: cannot read the parameter count from `{binary} --check {args.config}`:\n"
                 + p.stdout + p.stderr)
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "fashion_mnist_mlp.yaml"))
    ap.add_argument("--params", type=int, help="gradient length in floats (instead of --config)")
    ap.add_argument("--dtrain", default=os.path.join(ROOT, "build", "dtrain"))
    ap.add_argument("--platform", action="append", help="fast, commodity or a file (repeatable; default both)")
    ap.add_argument("--ranks", default="1 2 4 8 16 32 64 128")
    ap.add_argument("--gamma", type=float, default=0.0, help="seconds per byte of reduction (default 0)")
    ap.add_argument("--measured", action="append", default=[], help="launch/scaling scaling.csv to overlay")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    N = param_count(args)
    n = 4 * N
    ranks = [int(x) for x in args.ranks.replace(",", " ").split()]
    nets = [read_platform(p) for p in (args.platform or ["fast", "commodity"])]
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for net in nets:
        for P in ranks:
            t = model(net, P, n, args.gamma)
            rows.append({"platform": net["name"], "ranks": P, "params": N, "bytes": n,
                         **{k: f"{1000 * v:.4f}" for k, v in t.items()}})
    path = os.path.join(args.out, "allreduce_model.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["platform", "ranks", "params", "bytes", "ring",
                                          "recursive_doubling", "rabenseifner"])
        w.writeheader()
        w.writerows(rows)
    print(f"gradient {N} floats = {n / 1e6:.3f} MB; allreduce time in ms (alpha-beta model)")
    for net in nets:
        print(f"\n{net['name']}: inter-node alpha {net['alpha_net'] * 1e6:.1f} us, "
              f"{1 / net['beta_net'] / 1e9:.2f} GB/s; intra-node alpha {net['alpha_shm'] * 1e6:.1f} us, "
              f"{1 / net['beta_shm'] / 1e9:.1f} GB/s; {net['cores']} ranks per node")
        print(f"{'P':>5} {'ring':>9} {'rec.doubl':>9} {'Rabenseif':>9}")
        for r in rows:
            if r["platform"] == net["name"]:
                print(f"{r['ranks']:>5} {r['ring']:>9} {r['recursive_doubling']:>9} {r['rabenseifner']:>9}")
    print(f"\nwrote {path}")
    if not shutil.which("gnuplot"):
        print("gnuplot not installed (apt-get install gnuplot-nox): no plot")
        return 0
    dat = os.path.join(args.out, "allreduce_model.dat")
    colors = {"fast": "#1f77b4", "commodity": "#d62728"}
    plots = []
    with open(dat, "w") as f:
        for i, net in enumerate(nets):
            f.write(f"# {net['name']}\n")
            for r in rows:
                if r["platform"] == net["name"] and r["ranks"] > 1:
                    f.write(f"{r['ranks']} {r['ring']} {r['recursive_doubling']} {r['rabenseifner']}\n")
            f.write("\n\n")
            c = colors.get(net["name"], "#2ca02c")
            for col, name, dt in ((2, "ring", 1), (3, "recursive doubling", 2), (4, "Rabenseifner", 4)):
                plots.append(f"'{dat}' index {i} using 1:{col} with linespoints lc rgb '{c}' dt {dt} lw 2 "
                             f"title '{net['name']}: {name}'")
    for m in args.measured:
        mrows = [r for r in csv.DictReader(open(m)) if r.get("backend") == "smpi" and int(r["ranks"]) > 1]
        if not mrows:
            continue
        mdat = os.path.join(args.out, f"measured-{mrows[0]['platform']}.dat")
        with open(mdat, "w") as f:
            for r in sorted(mrows, key=lambda r: int(r["ranks"])):
                f.write(f"{r['ranks']} {r['communication_ms']}\n")
        c = colors.get(mrows[0]["platform"], "#2ca02c")
        plots.append(f"'{mdat}' using 1:2 with points lc rgb '{c}' pt 7 ps 1.5 "
                     f"title '{mrows[0]['platform']}: SMPI dtrain, communication per update'")
    gp = f"""set terminal pngcairo size 900,750 font 'sans,11'
set output '{os.path.join(args.out, "allreduce_model.png")}'
set logscale xy
set xrange [1.6:{max(ranks) * 1.25}]
set xlabel 'MPI ranks (8 per node)'
set ylabel 'allreduce time (ms)'
set grid
set key below
set title "Alpha-beta model: allreduce of the {n / 1e6:.2f} MB gradient ({N} floats)"
plot {", ".join(plots)}
"""
    p = subprocess.run(["gnuplot"], input=gp, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr)
        return 1
    print(f"wrote {os.path.join(args.out, 'allreduce_model.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
