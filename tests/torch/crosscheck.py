#!/usr/bin/python3
"""crosscheck.py - dtrain against PyTorch, update for update.

    /usr/bin/python3 tests/torch/crosscheck.py --model mlp|lenet
        --optimizer momentum|adam [--np N] [--steps 20] [--rtol 1e-5] --work DIR

Environment: DTRAIN (the binary), MPIEXEC (launcher and its options, split
on spaces). Exits 77 (SKIP) when torch cannot be imported: Debian's
python3-torch and python3-numpy, under /usr/bin/python3.

What it does, all from one folder it is given:
 1. writes a small learnable IDX data set (raw files, dtrain's standard
    names): 512 training and 256 test images of 1x28x28 in 10 classes;
 2. builds the model in PyTorch as an nn.Sequential with one module per
    entry of dtrain's model.layers (torch's own default initialisation,
    seeded), and saves its state_dict in the safetensors format (written
    here in a few lines: 8-byte little-endian header length, JSON header,
    float32 little-endian data);
 3. runs dtrain on N ranks from those weights (model.init_from) for the
    given number of updates, logging every update's loss;
 4. trains the PyTorch model on the same batches: the same epoch
    permutation (dtrain's generator, src/rng.c and src/data.c, ported
    below), the same normalisation ((x/255 - mean)/std with the training
    set's statistics, computed as src/data.c does, applied as
    x * scale + shift in float32), and torch.optim.SGD(momentum) or
    torch.optim.Adam, whose update rules are those of
    tests/reference/SPEC.md (momentum: v = m*v + g, w -= lr*v, dampening 0,
    coupled L2 decay; Adam: bias-corrected, eps outside the square root,
    coupled L2 decay);
 5. checks that every update's loss agrees to a relative --rtol, that the
    weights dtrain exported at the end (out/model.safetensors) load into the
    Sequential with load_state_dict(strict=True), that they are close to
    the weights PyTorch arrived at, and that they classify exactly as many
    test samples correctly in PyTorch as dtrain's summary.json says.

The MLP is given its inputs flattened ([B, 784]): dtrain's first dense
layer flattens its [C, H, W] input implicitly. The LeNet has an explicit
`flatten` entry before its first dense layer, which is the nn.Flatten of
the Sequential, so the indices (the tensor names) match.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - the machine decides
    print("SKIP: cannot import torch and numpy (%s); apt-get install python3-torch "
          "python3-numpy" % e)
    sys.exit(77)

MASK64 = (1 << 64) - 1
N_TRAIN, N_TEST, CLASSES = 512, 256, 10

# ---- dtrain's data order (src/rng.c, src/data.c), exactly ------------------


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def rand_u64(seed, stream, counter):
    key = mix64((seed + 0x9E3779B97F4A7C15) & MASK64)
    key = mix64(key ^ ((stream * 0xD1B54A32D192ED03) & MASK64))
    return mix64((key + counter * 0x9E3779B97F4A7C15) & MASK64)


def rand_below(seed, stream, counter, bound):
    attempt = 0
    while True:
        x = rand_u64(seed, stream, (counter + (attempt << 40)) & MASK64)
        m = x * bound
        low = m & MASK64
        if low >= bound or low >= ((-bound) & MASK64) % bound:
            return m >> 64
        attempt += 1


def epoch_permutation(seed, epoch, n):
    stream = 1 | (epoch << 8)  # DT_STREAM_PERMUTATION
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rand_below(seed, stream, i, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def dataset_stats(images):
    """dt_dataset_stats: mean and std of pixel/255 over a histogram, in double."""
    hist = np.bincount(images.reshape(-1), minlength=256)
    count = images.size
    m = 0.0
    for b in range(256):
        m += float(hist[b]) * (b / 255.0)
    m /= count
    v = 0.0
    for b in range(256):
        d = b / 255.0 - m
        v += float(hist[b]) * d * d
    v /= count
    return m, v ** 0.5


def normalise(images, mean, std):
    """dt_gather_batch: x = float(v) * scale + shift, all in float32."""
    mean_f, std_f = np.float32(mean), np.float32(std)
    scale = np.float32(1.0 / (255.0 * float(std_f)))
    shift = np.float32(-float(mean_f) / float(std_f))
    return images.astype(np.float32) * scale + shift


# ---- the data set ------------------------------------------------------------


def make_images(n, rng):
    """Class c lights a 7x7 cell of a 4x4 grid (shifted by up to a pixel) over
    noise, like tests/tools/make_idx.c; then a quarter of the labels are
    redrawn at random, so that the loss stays far from 0 (a loss of 1e-6 is
    a difference of two nearly equal float32 numbers in PyTorch, and its
    relative error says nothing about the update)."""
    labels = rng.integers(0, CLASSES, size=n).astype(np.uint8)
    images = rng.integers(0, 48, size=(n, 28, 28)).astype(np.uint8)
    for k in range(n):
        c = int(labels[k])
        r0 = (c // 4) * 7 + int(rng.integers(-1, 2))
        c0 = (c % 4) * 7 + int(rng.integers(-1, 2))
        r0, c0 = max(r0, 0), max(c0, 0)
        patch = rng.random((7, 7)) < 0.875
        block = images[k, r0:r0 + 7, c0:c0 + 7]
        block[patch[:block.shape[0], :block.shape[1]]] = 200 + int(rng.integers(0, 56))
    noisy = rng.random(n) < 0.25
    labels[noisy] = rng.integers(0, CLASSES, size=int(noisy.sum())).astype(np.uint8)
    return images, labels


def write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.tobytes())


# ---- safetensors, a few lines each way ------------------------------------------


def save_safetensors(path, state):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state.items():
        raw = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data[b:e], dtype="<f4").astype(np.float32).reshape(info["shape"]))
    return out, meta


# ---- the models: one Sequential module per model.layers entry -----------------

MODELS = {
    "mlp": {
        "layers": "[{dense: 64}, relu, {dense: 10}]",
        "torch": lambda: nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)),
        "flat_input": True,
    },
    "lenet": {
        "layers": "[{conv: {out: 6, kernel: 5, pad: 2}}, relu, {maxpool: {size: 2, stride: 2}}, "
                  "{conv: {out: 16, kernel: 5}}, relu, {maxpool: {size: 2, stride: 2}}, flatten, "
                  "{dense: 120}, relu, {dense: 84}, relu, {dense: 10}]",
        "torch": lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
        "flat_input": False,
    },
}

OPTIMIZERS = {
    # (dtrain's optimizer section, the torch optimizer)
    "momentum": ("{name: momentum, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}",
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0,
                                           nesterov=False, weight_decay=0.0005)),
    "adam": ("{name: adam, lr: 0.002, beta1: 0.9, beta2: 0.999, eps: 1.0e-8, weight_decay: 0.0005}",
             lambda p: torch.optim.Adam(p, lr=0.002, betas=(0.9, 0.999), eps=1e-8,
                                        weight_decay=0.0005)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=MODELS, required=True)
    ap.add_argument("--optimizer", choices=OPTIMIZERS, required=True)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    spec, opt_spec = MODELS[a.model], OPTIMIZERS[a.optimizer]

    # 1. the data
    data_dir = os.path.join(a.work, "data")
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(20261201)
    train_x, train_y = make_images(N_TRAIN, rng)
    test_x, test_y = make_images(N_TEST, rng)
    write_idx(os.path.join(data_dir, "train-images-idx3-ubyte"), train_x, 0x803)
    write_idx(os.path.join(data_dir, "train-labels-idx1-ubyte"), train_y, 0x801)
    write_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte"), test_x, 0x803)
    write_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte"), test_y, 0x801)

    # 2. the model and its initial weights
    model = spec["torch"]()
    init_path = os.path.join(a.work, "init.safetensors")
    save_safetensors(init_path, model.state_dict())

    # 3. dtrain from those weights
    out_dir = os.path.join(a.work, "out")
    cfg_path = os.path.join(a.work, "xcheck.yaml")
    with open(cfg_path, "w") as f:
        f.write("run: {name: xcheck, seed: %d, out_dir: %s}\n" % (a.seed, out_dir))
        f.write("data: {dir: %s, normalize: true, drop_last: true}\n" % data_dir)
        f.write("model: {input: [1, 28, 28], layers: %s, init_from: %s}\n"
                % (spec["layers"], init_path))
        f.write("train: {steps: %d, global_batch: %d, log_every: 1, eval_every: 0}\n"
                % (a.steps, a.batch))
        f.write("optimizer: %s\n" % opt_spec[0])
        f.write("checkpoint: {every_steps: 0}\n")
        f.write("comm: {check_replicas_every: 1}\n")
        f.write("runtime: {threads: 1}\n")
    cmd = os.environ.get("MPIEXEC", "mpiexec").split() + ["-np", str(a.np),
                                                          os.environ["DTRAIN"], cfg_path]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        print(run.stdout, run.stderr)
        print("FAIL: dtrain exited %d" % run.returncode)
        return 1
    losses = {}
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "train":
                losses[r["step"]] = r["loss"]
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)

    # 4. PyTorch on the same batches
    mean, std = dataset_stats(train_x)
    xs_train = torch.from_numpy(normalise(train_x, mean, std)).reshape(N_TRAIN, 1, 28, 28)
    xs_test = torch.from_numpy(normalise(test_x, mean, std)).reshape(N_TEST, 1, 28, 28)
    ys_train = torch.from_numpy(train_y.astype(np.int64))
    ys_test = torch.from_numpy(test_y.astype(np.int64))

    def inputs(x):
        return x.reshape(x.shape[0], -1) if spec["flat_input"] else x

    opt = opt_spec[1](model.parameters())
    upe = N_TRAIN // a.batch
    torch_losses, perm, worst = {}, None, 0.0
    print("step  dtrain loss      torch loss       relative difference")
    for step in range(1, a.steps + 1):
        epoch, i = (step - 1) // upe, (step - 1) % upe
        if i == 0:
            perm = epoch_permutation(a.seed, epoch, N_TRAIN)
        idx = torch.tensor(perm[i * a.batch:(i + 1) * a.batch])
        loss = F.cross_entropy(model(inputs(xs_train[idx])), ys_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch_losses[step] = loss.item()
        rel = abs(losses[step] - torch_losses[step]) / abs(torch_losses[step])
        worst = max(worst, rel)
        print("%4d  %.9f  %.9f  %.2e%s" % (step, losses[step], torch_losses[step], rel,
                                          "  <- over %g" % a.rtol if rel > a.rtol else ""))
    failed = []
    if sorted(losses) != list(range(1, a.steps + 1)):
        failed.append("dtrain logged steps %s" % sorted(losses))
    if worst > a.rtol:
        failed.append("losses differ by up to %.2e (relative), over %g" % (worst, a.rtol))
    if not torch_losses[a.steps] < 0.9 * torch_losses[1]:
        failed.append("the loss did not fall: %g -> %g" % (torch_losses[1], torch_losses[a.steps]))

    # 5. dtrain's exported weights in PyTorch
    state, meta = load_safetensors(os.path.join(out_dir, "model.safetensors"))
    exported = spec["torch"]()
    exported.load_state_dict(state, strict=True)  # raises on a missing/extra/misshapen tensor
    if meta.get("step") != str(a.steps):
        failed.append("metadata step %r, expected %d" % (meta.get("step"), a.steps))
    wdiff, wscale = 0.0, 0.0
    for (name, p), q in zip(model.state_dict().items(), exported.state_dict().values()):
        wdiff = max(wdiff, (p - q).abs().max().item())
        wscale = max(wscale, p.abs().max().item())
    with torch.no_grad():
        pred_dtrain = exported(inputs(xs_test)).argmax(1)
        pred_torch = model(inputs(xs_test)).argmax(1)
    correct_dtrain_weights = int((pred_dtrain == ys_test).sum())
    correct_torch = int((pred_torch == ys_test).sum())
    correct_summary = round(summary["test_accuracy"] * N_TEST)
    print("weights after %d updates: largest difference %.3g (largest weight %.3g)"
          % (a.steps, wdiff, wscale))
    print("test samples correct: dtrain %d (summary.json), its exported weights in PyTorch %d, "
          "PyTorch's own weights %d, of %d" % (correct_summary, correct_dtrain_weights,
                                               correct_torch, N_TEST))
    print("predictions that differ between the two weight sets: %d"
          % int((pred_dtrain != pred_torch).sum()))
    if correct_dtrain_weights != correct_summary:
        failed.append("the exported weights classify %d correctly in PyTorch, dtrain said %d"
                      % (correct_dtrain_weights, correct_summary))
    if wdiff > 1e-3 * max(wscale, 1.0):
        failed.append("the exported weights are far from PyTorch's: %g" % wdiff)
    print("%s %s on %d rank%s: worst relative loss difference %.2e over %d updates (tolerance %g)"
          % (a.model, a.optimizer, a.np, "" if a.np == 1 else "s", worst, a.steps, a.rtol))
    for f in failed:
        print("FAIL: " + f)
    if not failed:
        print("PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
