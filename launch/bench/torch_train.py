#!/usr/bin/python3
"""torch_train.py - dtrain's models trained in PyTorch, for launch/bench/compare.

    /usr/bin/python3 launch/bench/torch_train.py --model mlp256|mlp1024|lenet
        [--batch 128] [--threads 1] [--steps N] [--warmup W] [--ddp [--world 2]]
        [--data real|random|preloaded] [--channels-last] [--no-foreach] [--no-mkldnn]
        [--bind] [--json] [--info]

Run it with Debian's Python (/usr/bin/python3; apt-get install python3-torch
python3-numpy). The models are those of configs/fashion_mnist_mlp.yaml
(784-256-256-10 ReLU), the same with 1024 units, and the LeNet of
configs/fashion_mnist_lenet.yaml (conv 6x5x5 p2, relu, maxpool 2, conv 16x5x5,
relu, maxpool 2, dense 120, 84, 10), trained like dtrain: global batch 128,
softmax cross-entropy, SGD with momentum 0.9, lr 0.05, weight decay 1e-4
(no schedule: dtrain's costs one scalar per update).

Data (default --data real): the Fashion-MNIST training set, read from the
gzip IDX files in /usr/share/datasets/fashion-mnist with gzip + numpy and
kept in memory as a uint8 tensor. Every update does what dtrain does: take
the next indices of the epoch permutation (one torch.randperm per epoch),
gather those samples from uint8 and normalise them to float ((x/255 - mean) /
std, the training set's mean and std), then forward, backward, step. No
DataLoader. --data random uses uint8 noise of the same shape, same path.
--data preloaded is PyTorch at its best: the training set normalised to
float32 once and shuffled once, in the model's memory format, at load; every
update takes the next contiguous slice (a view: no gather, no conversion,
no copy), and the epoch wraps around without a new permutation.

Timing: --warmup updates (default 20) untimed, then --steps updates timed
with time.perf_counter; samples/s = global batch x steps / seconds.

--ddp: WORLD (default 2) processes started with torch.multiprocessing,
torch.distributed with the gloo backend, DistributedDataParallel; each rank
takes its shard (batch/WORLD samples) of the same global batch, so the
updates are those of the 1-process run. Rank 0 times between barriers.
--bind pins rank r to CPU r (like mpirun --bind-to core).

Threads: OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS are set
to --threads before torch is imported, plus torch.set_num_threads and
torch.set_num_interop_threads. PyTorch's Linear runs on the BLAS it is
linked with (Debian: libblas.so.3, i.e. OpenBLAS through alternatives),
conv2d on oneDNN (MKL-DNN) when torch.backends.mkldnn is enabled. If
OpenBLAS picked a core below what the CPU runs (Prescott on Sapphire Rapids,
Haswell on Zen 5), the script re-executes itself with OPENBLAS_CORETYPE set,
as dtrain does.

--info prints the configuration (torch version, oneDNN and BLAS, OpenBLAS
core, threads, and the oneDNN implementation each LeNet primitive uses, from
a verbose run) and exits. --json prints one JSON object as the last line.
"""
import argparse
import ctypes
import ctypes.util
import gzip
import json
import os
import subprocess
import sys
import time

# OpenBLAS cores by instruction set, as in dtrain's src/runtime.c: 0 generic
# SSE fallbacks, 1 AVX, 2 AVX2 + FMA, 3 AVX-512.
CORE_LEVELS = {**dict.fromkeys(("Prescott", "Core2", "Nehalem", "Penryn", "Dunnington", "Atom",
                                "Barcelona", "Unknown"), 0),
               **dict.fromkeys(("Sandybridge", "Bulldozer", "Piledriver", "Steamroller"), 1),
               **dict.fromkeys(("Haswell", "Zen", "Excavator"), 2),
               **dict.fromkeys(("SkylakeX", "Cooperlake", "SapphireRapids"), 3)}
DATA_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["mlp256", "mlp1024", "lenet"], default="mlp256")
    p.add_argument("--batch", type=int, default=128, help="global batch (all ranks)")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--steps", type=int, default=500, help="timed updates")
    p.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    p.add_argument("--ddp", action="store_true", help="DistributedDataParallel over gloo")
    p.add_argument("--world", type=int, default=2, help="processes with --ddp")
    p.add_argument("--bind", action="store_true", help="pin rank r to CPU r")
    p.add_argument("--data", choices=["real", "random", "preloaded"], default="real")
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--channels-last", action="store_true", help="LeNet in NHWC memory format")
    p.add_argument("--no-foreach", action="store_true", help="per-tensor optimizer loop")
    p.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled=False")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON line with the result")
    p.add_argument("--info", action="store_true", help="print the configuration and exit")
    p.add_argument("--verbose-step", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def openblas():
    """The OpenBLAS torch will use (loaded once per process, shared by torch)."""
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib
        except OSError:
            pass
    return None


def set_thread_env(threads):
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(threads)


def fix_blas_core():
    """Mirror dtrain's dt_runtime_fix_blas_kernel: re-exec once with a core set."""
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("DTRAIN_BLAS_REEXEC") == "0":
        return
    lib = openblas()
    if lib is None:
        return
    core = lib.openblas_get_corename().decode()
    flags = open("/proc/cpuinfo").read()
    want = ("SkylakeX" if all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
            else "Haswell" if "avx2" in flags and "fma" in flags else None)
    if want and CORE_LEVELS.get(core, -1) >= 0 and CORE_LEVELS[want] > CORE_LEVELS[core]:
        os.environ["OPENBLAS_CORETYPE"] = want
        os.environ["DTRAIN_BLAS_REEXEC"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)


# ---- data -------------------------------------------------------------------------
def read_idx(path, np):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # unsigned byte
        raise SystemExit(f"torch_train: {path}: not a uint8 IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"torch_train: {path}: {data.size} bytes of data, header says {dims}")
    return data.reshape(dims)


def load_train(args, torch, np):
    if args.data == "random":  # (preloaded reads the real set)
        g = torch.Generator().manual_seed(args.seed)
        images = torch.randint(0, 256, (60000, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (60000,), dtype=torch.int64, generator=g)
    else:
        def path(name):
            p = os.path.join(args.data_dir, name)
            return p if os.path.exists(p) else p + ".gz"
        images = torch.from_numpy(read_idx(path("train-images-idx3-ubyte"), np).copy())
        labels = torch.from_numpy(read_idx(path("train-labels-idx1-ubyte"), np).astype(np.int64))
    x = images.to(torch.float64) / 255.0
    mean, std = float(x.mean()), float(x.std(unbiased=False))
    return images.reshape(-1, 1, 28, 28).contiguous(), labels, mean, std


# ---- models -----------------------------------------------------------------------
def make_model(name, torch):
    nn = torch.nn
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10))
    h = 256 if name == "mlp256" else 1024
    return nn.Sequential(nn.Flatten(), nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                         nn.Linear(h, 10))


def init_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    torch.backends.mkldnn.enabled = not args.no_mkldnn
    torch.set_flush_denormal(True)
    return torch


# ---- training -----------------------------------------------------------------------
def train(rank, world, args, port, result_q):
    if args.bind:
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    torch = init_torch(args)
    import numpy as np
    import torch.nn.functional as F
    ddp = world > 1
    if ddp:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)
    images, labels, mean, std = load_train(args, torch, np)
    n = images.shape[0]
    model = make_model(args.model, torch)
    fmt = torch.channels_last if (args.channels_last and args.model == "lenet") else None
    if fmt is not None:
        model = model.to(memory_format=fmt)
    net = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, bucket_cap_mb=args.bucket_mb, gradient_as_bucket_view=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4,
                          foreach=not args.no_foreach)
    B = args.batch
    lo, hi = rank * B // world, (rank + 1) * B // world  # this rank's shard of the batch
    scale, shift = 1.0 / (255.0 * std), -mean / std
    upe = n // B  # drop_last
    gen = torch.Generator().manual_seed(args.seed)
    state = {"perm": None, "i": upe}
    if args.data == "preloaded":  # once: shuffled, float32, normalised, laid out
        perm = torch.randperm(n, generator=gen)
        images_f = images.index_select(0, perm).to(torch.float32).mul_(scale).add_(shift)
        images_f = images_f.contiguous(memory_format=fmt or torch.contiguous_format)
        labels_f = labels.index_select(0, perm).contiguous()

    def batch():
        if state["i"] == upe:
            state["i"] = 0
            if args.data != "preloaded":
                state["perm"] = torch.randperm(n, generator=gen)
        first = state["i"] * B
        state["i"] += 1
        if args.data == "preloaded":
            return images_f[first + lo: first + hi], labels_f[first + lo: first + hi]
        idx = state["perm"][first + lo: first + hi]
        x = images.index_select(0, idx).to(torch.float32).mul_(scale).add_(shift)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        return x, labels.index_select(0, idx)

    def step():
        x, y = batch()
        out = net(x)
        # sum over the shard / global batch = the mean over the global batch
        loss = F.cross_entropy(out, y, reduction="sum") * (1.0 / B) * world
        # (DDP averages gradients over ranks, hence x world: equal to dtrain's sum / b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if args.verbose_step:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            step()
        sys.stdout.flush()
        return
    for _ in range(args.warmup):
        step()
    if ddp:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if ddp:
        dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        res = {"model": args.model, "world": world, "global_batch": B, "threads": args.threads,
               "steps": args.steps, "seconds": dt, "samples_per_second": B * args.steps / dt,
               "loss": float(loss), "data": args.data, "channels_last": fmt is not None,
               "foreach": not args.no_foreach, "mkldnn": torch.backends.mkldnn.enabled,
               "bind": args.bind}
        if result_q is not None:
            result_q.put(res)
        else:
            report(res, args)
    if ddp:
        dist.destroy_process_group()


def report(res, args):
    print(f"torch {res['model']}: {res['world']} process{'es' if res['world'] > 1 else ''}, "
          f"global batch {res['global_batch']}, {res['threads']} thread(s) each, "
          f"{res['steps']} updates in {res['seconds']:.3f} s: "
          f"{res['samples_per_second']:.0f} samples/s (loss {res['loss']:.4f})")
    if args.json:
        print(json.dumps(res))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def info(args):
    torch = init_torch(args)
    lib = openblas()
    core = lib.openblas_get_corename().decode() if lib else "?"
    cfg = torch.__config__.show()
    dnn = [l.strip("- ").strip() for l in cfg.splitlines() if "MKL-DNN" in l or "oneDNN" in l]
    blas = [p.split(":")[-1] for p in cfg.replace(",", "\n").splitlines() if "BLAS_INFO" in p]
    print(f"torch {torch.__version__}; {'; '.join(dnn)}; "
          f"mkldnn available {torch.backends.mkldnn.is_available()}, enabled "
          f"{torch.backends.mkldnn.enabled}; MKL available {torch.backends.mkl.is_available()}")
    print(f"BLAS: {', '.join(b.strip() for b in blas)} -> OpenBLAS core {core} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); "
          f"torch threads {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    # which oneDNN kernels LeNet's primitives use: one verbose update in a child
    for cl in (False, True):
        cmd = [sys.executable, os.path.abspath(__file__), "--model", "lenet", "--verbose-step",
               "--threads", str(args.threads), "--data", "random"] + (["--channels-last"] if cl else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ)).stdout
        impls = {}
        for line in out.splitlines():
            f = line.split(",")
            if len(f) > 5 and f[0] in ("onednn_verbose", "dnnl_verbose") and f[1] == "exec":
                # onednn_verbose,exec,cpu,convolution,jit:avx512_core,backward_weights,...
                key = f"{f[3]}/{f[5]}"
                impls.setdefault(key, f[4])
        desc = ", ".join(f"{k}: {v}" for k, v in sorted(impls.items())) or "no oneDNN primitive ran"
        print(f"oneDNN in LeNet ({'channels-last' if cl else 'NCHW'}): {desc}")


def main():
    args = parse_args()
    set_thread_env(args.threads)
    fix_blas_core()
    if args.info:
        info(args)
        return
    if args.ddp and args.world > 1:
        import torch.multiprocessing as mp
        ctx = mp.get_context("spawn")
        q = ctx.SimpleQueue()
        port = free_port()
        mp.start_processes(train, args=(args.world, args, port, q), nprocs=args.world,
                           join=True, start_method="spawn")
        report(q.get(), args)
    else:
        train(0, 1, args, None, None)


if __name__ == "__main__":
    main()
