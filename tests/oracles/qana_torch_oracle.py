#!/usr/bin/python3
"""PyTorch oracle for the C# training engine.

Builds a small QANA (the CONTRACTS.md shape at reduced width: input 16x16x3, stem 8, blocks (16,1) and
(24,2), SE, head) in float64 with fixed seeded weights, runs one training-mode forward pass (batch-norm
batch statistics, no dropout) and the class-weighted cross-entropy, and writes the input, weights,
logits, loss and every gradient to tests/QanaEdge.Training.Tests/Fixtures/qana_small_torch.json in the
C# layouts (NHWC activations; conv weights [Kh*Kw*Cin, Cout], depthwise [Kh, Kw, C], dense [In, Out]).
Run with /usr/bin/python3 (torch 1.13); the fixture is committed so CI needs no torch.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(20240611)
dt = torch.float64
N, S, K = 4, 16, 7
STEM = 8
BLOCKS = [(16, 1), (24, 2)]
SE_HIDDEN = max(4, BLOCKS[-1][0] // 8)


def same_pad(x, k, s):
    """TensorFlow SAME padding, the extra row/column at the bottom/right (as the integer engine)."""
    h, w = x.shape[2], x.shape[3]
    oh, ow = math.ceil(h / s), math.ceil(w / s)
    ph = max((oh - 1) * s + k - h, 0)
    pw = max((ow - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


params = {}  # name -> leaf tensor (torch layout)


def p(name, *shape, scale=None, value=None):
    if value is not None:
        t = torch.full(shape, value, dtype=dt)
    else:
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        t = torch.randn(*shape, dtype=dt) * (scale if scale is not None else math.sqrt(2.0 / max(1, fan_in)))
    t.requires_grad_(True)
    params[name] = t
    return t


def conv(name, cin, cout, k, s, bias):
    w = p(name + ".w", cout, cin, k, k)
    b = p(name + ".b", cout, scale=0.1) if bias else None
    return lambda x: F.conv2d(same_pad(x, k, s), w, b, stride=s)


def dw(name, c, k, s):
    w = p(name + ".w", c, 1, k, k, scale=math.sqrt(2.0 / (k * k)))
    return lambda x: F.conv2d(same_pad(x, k, s), w, None, stride=s, groups=c)


def bn(name, c):
    g = p(name + ".gamma", c, scale=0.2)
    with torch.no_grad():
        g += 1.0
    b = p(name + ".beta", c, scale=0.1)
    return lambda x: F.batch_norm(x, None, None, g, b, training=True, momentum=0.1, eps=1e-5)


def dense(name, i, o):
    w = p(name + ".w", o, i, scale=math.sqrt(1.0 / i))
    b = p(name + ".b", o, scale=0.1)
    return lambda x: F.linear(x, w, b)


stem = conv("stem", 3, STEM, 3, 1, False)
stem_bn = bn("stem.bn", STEM)
blocks = []
cin = STEM
for i, (cout, s) in enumerate(BLOCKS):
    n = f"block{i + 1}"
    blk = dict(
        pdw=dw(n + ".primary.dw", cin, 3, s),
        ppw=conv(n + ".primary.pw", cin, cout // 2, 1, 1, False),
        gdw=dw(n + ".ghost.dw", cout // 2, 3, 1),
        bn=bn(n + ".bn", cout),
        edw=dw(n + ".eca.dw", cout, 3, 1),
        epw=conv(n + ".eca.pw", cout, cout, 1, 1, True),
        proj=conv(n + ".proj", cin, cout, 1, s, True),
    )
    blocks.append(blk)
    cin = cout
tdw = dw("transform.dw", cin, 3, 1)
tpw = conv("transform.pw", cin, cin, 1, 1, False)
tbn = bn("transform.bn", cin)
fc1 = dense("se.fc1", cin, SE_HIDDEN)
fc2 = dense("se.fc2", SE_HIDDEN, cin)
final = S
for _, s in BLOCKS:
    final = math.ceil(final / s)
head = dense("head", final * final * cin, K)


def forward(x):
    h = F.hardtanh(stem_bn(stem(x)), 0.0, 6.0)
    for b in blocks:
        prim = b["ppw"](b["pdw"](h))
        y = torch.cat([prim, b["gdw"](prim)], dim=1)
        y = F.hardtanh(b["bn"](y), 0.0, 6.0)
        y = y * torch.sigmoid(b["epw"](b["edw"](y)))
        h = y + b["proj"](h)
    h = F.hardtanh(tbn(tpw(tdw(h))), 0.0, 6.0)
    g = torch.sigmoid(fc2(F.relu(fc1(h.mean(dim=(2, 3))))))
    h = h * g[:, :, None, None]
    flat = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # HWC order, as the C# flatten
    return head(flat)


x = torch.rand(N, 3, S, S, dtype=dt, requires_grad=True)
labels = torch.tensor([0, 4, 5, 2], dtype=torch.long)
class_weights = torch.tensor([2.0, 1.5, 1.0, 3.0, 1.2, 0.5, 2.5], dtype=dt)
logits = forward(x)
loss = F.cross_entropy(logits, labels, weight=class_weights)
loss.backward()


def to_cs(name, t):
    """Torch layout -> C# layout, flattened."""
    t = t.detach()
    if name.endswith(".w") and t.dim() == 4:
        if t.shape[1] == 1 and ("dw" in name.split(".")[-2] or name.split(".")[-2] == "dw"):
            return t[:, 0].permute(1, 2, 0).reshape(-1).tolist()          # [C,1,Kh,Kw] -> [Kh,Kw,C]
        return t.permute(2, 3, 1, 0).reshape(-1).tolist()                   # [Co,Ci,Kh,Kw] -> [Kh,Kw,Ci,Co]
    if name.endswith(".w") and t.dim() == 2:
        return t.t().reshape(-1).tolist()                                   # [Out,In] -> [In,Out]
    return t.reshape(-1).tolist()


fixture = {
    "description": "Small QANA (input 16, stem 8, blocks (16,1),(24,2), SE, head 7) in float64 PyTorch "
                   + torch.__version__ + ": training-mode BN, no dropout, weighted cross-entropy.",
    "batch": N, "input_size": S, "stem": STEM, "blocks": [list(b) for b in BLOCKS],
    "input_nhwc": x.detach().permute(0, 2, 3, 1).reshape(-1).tolist(),
    "labels": labels.tolist(),
    "class_weights": class_weights.tolist(),
    "params": {k: to_cs(k, v) for k, v in params.items()},
    "logits": logits.detach().reshape(-1).tolist(),
    "loss": loss.item(),
    "grads": {k: to_cs(k, v.grad) for k, v in params.items()},
    "input_grad_nhwc": x.grad.detach().permute(0, 2, 3, 1).reshape(-1).tolist(),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "QanaEdge.Training.Tests", "Fixtures", "qana_small_torch.json")
with open(out, "w") as f:
    json.dump(fixture, f, separators=(",", ":"))
print(f"wrote {os.path.normpath(out)}: loss {loss.item():.6f}, {len(params)} parameters")
