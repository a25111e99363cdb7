#!/usr/bin/python3
"""The brief's simply trained float baseline, measured on our own lesion-grouped split.

The brief quotes, for scale, a float PyTorch network of QANA's shape trained simply (flips, brightness,
class-weighted loss, 30 epochs) at about 80 % top-1, 61 % balanced accuracy and 60 % macro-F1 "on a
lesion-grouped split of this data". That split is not ours, and on HAM10000 the split alone moves these
figures by several points. This script trains that baseline on firmware-models/splits, so the shipped
package is compared with it on the same test images. Debian's python3-torch serves as the peer here, as in
bench_training.py; nothing of it reaches the product.

Preprocessing follows the device's path closely (centred square crop, area resampling to SIZE x SIZE, RGB)
with PIL's BOX filter; it is not bit-identical to ours, which a baseline does not need.
Usage:
    /usr/bin/python3 tests/oracles/float_baseline.py [--data ../shared/data/ham10000] [--splits firmware-models/splits]
        [--epochs 30] [--seed 1] [--threads 2] [--out baseline.json]
Prints a progress line per epoch on stderr and one JSON object on stdout (and in --out).
"""
import argparse
import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_training import Qana  # noqa: E402  (the same network shape the throughput benchmark trains)

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def read_split(path):
    with open(path, newline="") as f:
        return [(r["image_id"], CLASSES.index(r["dx"])) for r in csv.DictReader(f)]


def load_image(images, image_id, size):
    with Image.open(os.path.join(images, image_id + ".jpg")) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BOX)
        return np.asarray(im, dtype=np.uint8)


def load_set(images, rows, size):
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        pixels = list(pool.map(lambda r: load_image(images, r[0], size), rows))
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()  # N,3,S,S uint8
    y = torch.tensor([r[1] for r in rows], dtype=torch.long)
    return x, y


def metrics(pred, truth, k=len(CLASSES)):
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth.tolist(), pred.tolist()):
        cm[t, p] += 1
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    return {"top1": float(tp.sum() / cm.sum()), "balanced_accuracy": float(recall.mean()),
            "macro_f1": float(f1.mean()), "confusion": cm.tolist()}


def predict(net, x, mean, std, batch=256):
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(net((x[i:i + batch].float() / 255 - mean) / std).argmax(1))
    return torch.cat(out)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "ham10000"))
    ap.add_argument("--splits", default=os.path.join(root, "firmware-models", "splits"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    images = os.path.join(a.data, "images")
    t0 = time.perf_counter()
    sets = {name: load_set(images, read_split(os.path.join(a.splits, name + ".csv")), a.size)
            for name in ("train", "val", "test")}
    xtr, ytr = sets["train"]
    print(f"loaded {len(ytr)}/{len(sets['val'][1])}/{len(sets['test'][1])} images in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    mean = (xtr.float() / 255).mean((0, 2, 3), keepdim=True)
    std = (xtr.float() / 255).std((0, 2, 3), keepdim=True)
    counts = torch.bincount(ytr, minlength=len(CLASSES)).float()
    weights = counts.sum() / (len(CLASSES) * counts)  # inverse frequency, mean-one over the training images

    net = Qana(a.size)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(ytr) / a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps_per_epoch,
                                                pct_start=0.1, anneal_strategy="cos")
    history, best = [], None
    for epoch in range(1, a.epochs + 1):
        net.train()
        order = torch.randperm(len(ytr), generator=gen)
        te, total = time.perf_counter(), 0.0
        for i in range(0, len(order), a.batch):
            idx = order[i:i + a.batch]
            x = xtr[idx].float() / 255
            flip_h = torch.rand(len(idx), generator=gen) < 0.5
            flip_v = torch.rand(len(idx), generator=gen) < 0.5
            x[flip_h] = x[flip_h].flip(3)
            x[flip_v] = x[flip_v].flip(2)
            x = (x * (0.8 + 0.4 * torch.rand(len(idx), 1, 1, 1, generator=gen))).clamp(0, 1)
            loss = F.cross_entropy(net((x - mean) / std), ytr[idx], weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val = metrics(predict(net, sets["val"][0], mean, std), sets["val"][1])
        row = {"epoch": epoch, "loss": round(total / len(ytr), 4), "val_macro_f1": round(val["macro_f1"], 4),
               "val_balanced_accuracy": round(val["balanced_accuracy"], 4), "val_top1": round(val["top1"], 4),
               "seconds": round(time.perf_counter() - te, 1)}
        history.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if best is None or val["macro_f1"] > best[0]:
            best = (val["macro_f1"], epoch, {k: v.clone() for k, v in net.state_dict().items()})

    last_test = metrics(predict(net, sets["test"][0], mean, std), sets["test"][1])
    net.load_state_dict(best[2])
    best_test = metrics(predict(net, sets["test"][0], mean, std), sets["test"][1])
    result = {"engine": f"pytorch-{torch.__version__}", "seed": a.seed, "epochs": a.epochs, "size": a.size,
              "threads": a.threads, "parameters": sum(p.numel() for p in net.parameters()),
              "wall_seconds": round(time.perf_counter() - t0, 1), "best_val_epoch": best[1],
              "test_at_best_val_epoch": best_test, "test_at_last_epoch": last_test, "history": history}
    text = json.dumps(result)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
