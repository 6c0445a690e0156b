"""The networks fastdyn's kernels know.

* :class:`OneHidden` — the mean-field one-hidden-layer network of seed 002,
  ``f(x) = (1/h) sum_n beta_n sigma(omega_n . x / sqrt(d) + b_n)``; fused kernels (NTK closed form, kinks,
  training) use its parameters directly.
* :class:`FCNet` — a deep fully connected ``nn.Sequential`` of ``nn.Linear`` and elementwise activations.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

SCALES = {"mf": "1/h (mean field)", "ntk": "1/sqrt(h) (NTK)"}


def activation(name: str) -> nn.Module:
    """A fresh activation module from its name (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class OneHidden(nn.Module):
    """One-hidden-layer network ``f(x) = s_h sum_n beta_n act(omega_n . x / sqrt(d) + b_n)``.

    Args:
        d: input dimension.
        h: width (number of hidden neurons).
        act: activation name (see ``ACTIVATIONS``); the fused kernels cover "relu".
        scale: "mf" gives s_h = 1/h (mean field, the seed's choice), "ntk" gives s_h = 1/sqrt(h).
        dtype, device: of the parameters.
        generator: torch.Generator for a reproducible standard-normal init.

    Parameters ``omega`` (h, d), ``b`` (h,), ``beta`` (h,) start standard normal. Input (N, d), output (N,).
    """

    def __init__(self, d: int, h: int, act: str = "relu", scale: str = "mf", *, dtype=torch.float32,
                 device=None, generator: torch.Generator | None = None):
        super().__init__()
        if int(d) < 1 or int(h) < 1:
            raise ValueError(f"d and h must be positive integers, got d={d}, h={h}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
        activation(act)  # validates the name
        self.d, self.h, self.act, self.scale = int(d), int(h), act, scale
        kw = dict(dtype=dtype, device=device, generator=generator)
        self.omega = nn.Parameter(torch.randn(self.h, self.d, **kw))
        self.b = nn.Parameter(torch.randn(self.h, **kw))
        self.beta = nn.Parameter(torch.randn(self.h, **kw))

    @property
    def output_scale(self) -> float:
        """The factor s_h in front of the sum over neurons."""
        return 1.0 / self.h if self.scale == "mf" else 1.0 / math.sqrt(self.h)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """omega . x / sqrt(d) + b, shape (N, h)."""
        return x @ self.omega.T / math.sqrt(self.d) + self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (N, {self.d}), got {tuple(x.shape)}")
        hidden = activation(self.act)(self.preactivation(x))
        return self.output_scale * (hidden @ self.beta)

    def extra_repr(self) -> str:
        return f"d={self.d}, h={self.h}, act={self.act!r}, scale={self.scale!r}"


class FCNet(nn.Sequential):
    """Fully connected network: ``Linear(dims[0], dims[1])``, act, ..., ``Linear(dims[-2], dims[-1])``.

    Args:
        dims: layer widths, input first, output last (at least two entries).
        act: activation name between linear layers (none after the last).
        bias: whether the linear layers have biases.

    Uses torch's default ``nn.Linear`` initialisation. Input (N, dims[0]), output (N, dims[-1]).
    """

    def __init__(self, dims, act: str = "relu", bias: bool = True, *, dtype=torch.float32, device=None):
        dims = [int(w) for w in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"dims must list at least two positive widths, got {dims}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            if i:
                layers.append(activation(act))
            layers.append(nn.Linear(fan_in, fan_out, bias=bias, dtype=dtype, device=device))
        super().__init__(*layers)
        self.dims, self.act = dims, act
