"""Plain-torch one-hidden-layer ReLU network kernels (the "torch" backend)."""
import math

import torch


def forward(x: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor, scale: float,
            chunk: int = 65536) -> torch.Tensor:
    """out (p,) = scale * relu(x omega^T / sqrt(d) + b) beta, over neuron chunks so memory stays O(p * chunk)."""
    out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    inv_sqrt_d = 1.0 / math.sqrt(x.shape[1])
    for start in range(0, omega.shape[0], chunk):
        stop = start + chunk
        pre = torch.addmm(b[start:stop], x, omega[start:stop].T, alpha=inv_sqrt_d)
        out += torch.relu_(pre) @ beta[start:stop]
    return out * scale
