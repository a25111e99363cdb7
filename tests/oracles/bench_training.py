#!/usr/bin/python3
"""Training throughput, QanaEdge vs PyTorch CPU, in one run on the same machine.

Same architecture (the full QANA at 64x64, CONTRACTS.md shape), same batch (64), same thread count (2),
one training step = forward, label-smoothed cross-entropy, backward, AdamW. Usage:
    /usr/bin/python3 tests/oracles/bench_training.py QANA_CLI [--steps N] [--threads T] [--batch B]
QANA_CLI is the built `qana` executable (or "dotnet path/to/qana.dll"). Prints one JSON object.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def same_pad(x, k, s):
    h, w = x.shape[2], x.shape[3]
    oh, ow = math.ceil(h / s), math.ceil(w / s)
    ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class Block(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.s = s
        self.pdw = nn.Conv2d(cin, cin, 3, s, groups=cin, bias=False)
        self.ppw = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.gdw = nn.Conv2d(cout // 2, cout // 2, 3, 1, groups=cout // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(0.1)
        self.edw = nn.Conv2d(cout, cout, 3, 1, groups=cout, bias=False)
        self.epw = nn.Conv2d(cout, cout, 1)
        self.proj = nn.Conv2d(cin, cout, 1, s)

    def forward(self, x):
        p = self.ppw(self.pdw(same_pad(x, 3, self.s)))
        y = torch.cat([p, self.gdw(same_pad(p, 3, 1))], 1)
        y = self.drop(F.relu6(self.bn(y)))
        y = y * torch.sigmoid(self.epw(self.edw(same_pad(y, 3, 1))))
        return y + self.proj(x)


class Qana(nn.Module):
    def __init__(self, size=64):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(24)
        chans = [(24, 48, 1), (48, 64, 2), (64, 96, 2), (96, 128, 2)]
        self.blocks = nn.Sequential(*[Block(a, b, s) for a, b, s in chans])
        self.tdw = nn.Conv2d(128, 128, 3, 1, groups=128, bias=False)
        self.tpw = nn.Conv2d(128, 128, 1, bias=False)
        self.tbn = nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128, 16)
        self.fc2 = nn.Linear(16, 128)
        f = size
        for _, _, s in chans:
            f = math.ceil(f / s)
        self.head = nn.Linear(f * f * 128, 7)

    def forward(self, x):
        h = F.relu6(self.stem_bn(self.stem(same_pad(x, 3, 1))))
        h = self.blocks(h)
        h = F.relu6(self.tbn(self.tpw(self.tdw(same_pad(h, 3, 1)))))
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(h.mean((2, 3))))))
        h = h * g[:, :, None, None]
        return self.head(h.flatten(1))


def torch_throughput(batch, steps, threads, size=64, warmup=2):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Qana(size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-3)
    x = torch.rand(batch, 3, size, size)
    y = torch.arange(batch) % 7

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"engine": f"pytorch-{torch.__version__}", "batch": batch, "threads": threads, "steps": steps,
            "seconds": round(dt, 3), "images_per_s": round(batch * steps / dt, 1), "cpu_seconds": round(cpu, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("qana")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    cmd = shlex.split(a.qana) + ["train", "--throughput-steps", str(a.steps), "--threads", str(a.threads), "--batch-size", str(a.batch)]
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    peer = torch_throughput(a.batch, a.steps, a.threads)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(json.dumps({"qanaedge": ours, "peers": {"pytorch": peer}, "load_average": load, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
