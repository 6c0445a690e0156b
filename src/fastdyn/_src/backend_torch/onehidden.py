"""Plain-torch one-hidden-layer ReLU network kernels (the "torch" backend), over neuron chunks."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from ..registry import register


@register("onehidden.forward", "torch")
def forward(x: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor, *, scale: float,
            chunk: int = 65536) -> torch.Tensor:
    """out (p,) = scale * relu(x omega^T / sqrt(d) + b) beta, over neuron chunks so memory stays O(p * chunk)."""
    out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    inv_sqrt_d = 1.0 / math.sqrt(x.shape[1])
    for start in range(0, omega.shape[0], chunk):
        stop = start + chunk
        pre = torch.addmm(b[start:stop], x, omega[start:stop].T, alpha=inv_sqrt_d)
        out += torch.relu_(pre) @ beta[start:stop]
    return out * scale


@register("onehidden.jvp", "torch")
def jvp(x: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor, v_omega: torch.Tensor,
        v_b: torch.Tensor, v_beta: torch.Tensor, *, scale: float, max_elements: int = 1 << 22) -> torch.Tensor:
    """(p,) scale * sum_n [pre_n > 0] (v_beta_n pre_n(x_i) + beta_n (v_omega_n . x_i / sqrt(d) + v_b_n)), over
    neuron chunks of at most ``max_elements`` (points x neurons) entries."""
    p, d = x.shape
    inv_sqrt_d = 1.0 / math.sqrt(d)
    out = torch.zeros(p, dtype=x.dtype, device=x.device)
    chunk = max(1, max_elements // p)
    for start in range(0, omega.shape[0], chunk):
        stop = start + chunk
        pre = torch.addmm(b[start:stop], x, omega[start:stop].T, alpha=inv_sqrt_d)
        change = torch.addmm(v_b[start:stop], x, v_omega[start:stop].T, alpha=inv_sqrt_d)
        out += torch.relu(pre) @ v_beta[start:stop] + ((pre > 0).to(x.dtype) * change) @ beta[start:stop]
    return out * scale


@register("onehidden.gradient", "torch")
def gradient(x: torch.Tensor, g: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor, *,
             scale: float, max_elements: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of sum_i g_i f(x_i) for g (p,): (grad_omega (h, d), grad_b (h,), grad_beta (h,)).

    Chunked over neurons so the (points x neurons) masks stay below ``max_elements`` entries.
    """
    p, d = x.shape
    inv_sqrt_d = 1.0 / math.sqrt(d)
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    chunk = max(1, max_elements // p)
    for start in range(0, omega.shape[0], chunk):
        stop = start + chunk
        pre = torch.addmm(b[start:stop], x, omega[start:stop].T, alpha=inv_sqrt_d)  # (p, chunk)
        gated = (pre > 0).to(x.dtype).mul_(g[:, None])  # g_i a_n(x_i)
        weight = scale * beta[start:stop]
        grad_omega[start:stop] = (gated.T @ x).mul_(weight[:, None] * inv_sqrt_d)
        grad_b[start:stop] = gated.sum(0).mul_(weight)
        grad_beta[start:stop] = (g @ torch.relu_(pre)).mul_(scale)
    return grad_omega, grad_b, grad_beta


@register("onehidden.pattern_keys", "torch")
def pattern_keys(x: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, *,
                 max_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, 16) uint8 BLAKE2b digests of the bit-packed patterns, in neuron chunks of at most ``max_elements``
    booleans; and the (h,) dead mask (active on no point)."""
    p, d = x.shape
    h = omega.shape[0]
    digests = np.empty((h, 16), dtype=np.uint8)
    dead = np.empty(h, dtype=bool)
    chunk = max(1, max_elements // p)
    for start in range(0, h, chunk):
        pre = torch.addmm(b[start:start + chunk, None], omega[start:start + chunk], x.T, alpha=1.0 / math.sqrt(d))
        active = (pre > 0).cpu().numpy()  # (c, p)
        dead[start:start + chunk] = ~active.any(1)
        for row, bits in enumerate(np.packbits(active, axis=1), start):
            digests[row] = np.frombuffer(hashlib.blake2b(bits.tobytes(), digest_size=16).digest(), np.uint8)
    return digests, dead
