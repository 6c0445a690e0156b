"""The plain-torch GF(2) elimination (the reference): Gauss-Jordan on a bool matrix, one vectorised XOR of the
pivot row into every other row with a 1 in the pivot column, on CPU or CUDA. n d^2 byte operations: fine up to
d ~ 1000, slow beyond (the "cpu" backend packs 64 equations per word)."""
from __future__ import annotations

import torch

from ..registry import register


@register("gf2.eliminate", "torch")
def eliminate(z, b):
    a = torch.cat([torch.as_tensor(z, dtype=torch.bool), torch.as_tensor(b, dtype=torch.bool)[:, None]], dim=1)
    n, d = a.shape[0], a.shape[1] - 1
    used = torch.zeros(n, dtype=torch.bool, device=a.device)
    pivots = torch.full((d,), -1, dtype=torch.int64)
    for c in range(d):
        candidates = a[:, c] & ~used
        if not bool(candidates.any()):
            continue
        p = int(torch.argmax(candidates.to(torch.uint8)))   # the first unused equation with a 1
        pivots[c] = p
        used[p] = True
        rows = a[:, c].clone()
        rows[p] = False
        a[rows] ^= a[p]
    return pivots.numpy(), a[:, d].cpu().numpy()
