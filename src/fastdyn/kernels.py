"""Infinite-width kernels of fully connected networks: the NNGP kernel (the covariance of the outputs at
initialisation) and the NTK (the limit of the empirical neural tangent kernel), by the layer recursion of Jacot,
Gabriel & Hongler (2018) and Lee et al. (2019), with the Gaussian expectations in closed form:

* ReLU: the arc-cosine kernels of Cho & Saul (2009), E[relu(u) relu(v)] = sqrt(s11 s22) (sin t + (pi - t) cos t)
  / (2 pi) and E[1(u > 0) 1(v > 0)] = (pi - t) / (2 pi), cos t = s12 / sqrt(s11 s22);
* erf: Williams (1998), E[erf(u) erf(v)] = (2 / pi) asin(2 s12 / sqrt((1 + 2 s11) (1 + 2 s22))) and
  E[erf'(u) erf'(v)] = (4 / pi) / sqrt((1 + 2 s11) (1 + 2 s22) - 4 s12^2);

for (u, v) ~ N(0, [[s11, s12], [s12, s22]]).

The network (NTK parametrisation, every weight and bias standard normal): h_1 = sqrt(w_1 / d) W_1 x + sqrt(b_1) c_1,
h_{l+1} = sqrt(w_{l+1} / n_l) W_{l+1} act(h_l) + sqrt(b_{l+1}) c_{l+1}, output f = h_{L+1}; its kernels as all
widths n_l -> inf are Sigma_{l+1} = w_{l+1} E[act(u) act(v)] + b_{l+1} (u, v ~ Sigma_l), Sigma_1 = w_1 x.x'/d + b_1,
and Theta_{l+1} = Theta_l w_{l+1} E[act'(u) act'(v)] + Sigma_{l+1}, Theta_1 = Sigma_1.
:func:`onehidden_kernels` is this for the seed's :class:`fastdyn.OneHidden` exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._src import checks, memory, registry
from ._src.arrays import as_tensors, check_matrix
from ._src.backend_torch.infinite_width import gaussian_expectations as torch_expectations

__all__ = ["Kernels", "fc_kernels", "onehidden_kernels", "gaussian_expectations", "ACTIVATIONS"]

#: The activations with closed-form infinite-width kernels (``act=`` of :func:`fc_kernels`).
ACTIVATIONS = ("relu", "erf")


@dataclass(frozen=True)
class Kernels:
    """nngp, ntk: (N1, N2) kernels (x2 None: (N1, N1), exactly symmetric), in x1's kind, dtype and device."""

    nngp: torch.Tensor
    ntk: torch.Tensor


def gaussian_expectations(s11, s12, s22, act: str = "relu") -> tuple[torch.Tensor, torch.Tensor]:
    """(E[act(u) act(v)], E[act'(u) act'(v)]) for (u, v) ~ N(0, [[s11, s12], [s12, s22]]), elementwise over
    broadcastable tensors of variances s11, s22 > 0 and covariance s12."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
    return torch_expectations(s11, s12, s22, act)


def fc_kernels(x1, x2=None, *, depth: int = 1, act: str = "relu", weight_var: float = 1.0,
               bias_var: float = 0.0, backend: str = "auto") -> Kernels:
    """The NNGP kernel and the NTK of a fully connected network with ``depth`` hidden layers of infinite width in
    the NTK parametrisation (module docstring), every layer with variances ``weight_var`` and ``bias_var``.

    Args:
        x1: (N1, d) inputs; x2: (N2, d) or None (the kernel of x1 with itself, exactly symmetric).
        depth: hidden layers, >= 1. act: "relu" or "erf".
        weight_var, bias_var: w_l > 0 and b_l >= 0 of every layer (ReLU's variance-preserving choice is w = 2).
        backend: "auto", "cpu" (the fused C++ recursion: one pass over each row chunk through all layers), "cuda"
            (one GPU thread per entry through all layers; inputs on the GPU) or "torch" (plain torch).

    Memory: the two (N1, N2) outputs on "cpu" and "cuda", a few more (N1, N2) temporaries on "torch".
    """
    depth = checks.integer("depth", depth)
    weight_var = checks.real("weight_var", weight_var)
    bias_var = checks.real("bias_var", bias_var, strict=False)
    return _recursion(x1, x2, [weight_var] * (depth + 1), [bias_var] * (depth + 1), act, backend)


def onehidden_kernels(x1, x2=None, *, scale: str = "ntk", h: int | None = None, backend: str = "auto") -> Kernels:
    """The infinite-width kernels of the seed's ReLU :class:`fastdyn.OneHidden`, f(x) = s_h sum_n beta_n
    relu(omega_n . x / sqrt(d) + b_n) with omega, b, beta standard normal: the mean of its empirical NTK and of
    f(x) f(x') over initialisations, as h -> inf.

    ``scale="ntk"`` (s_h = 1/sqrt(h)): Theta = E[relu(u) relu(v)] + E[1(u>0) 1(v>0)] (x.x'/d + 1), NNGP
    E[relu(u) relu(v)], with u, v ~ N(0, x.x'/d + 1). ``scale="mf"`` (s_h = 1/h): both divided by ``h``, the
    width of the network compared (the mean-field NTK vanishes as h grows; this is its leading term).
    """
    if scale not in ("ntk", "mf"):
        raise ValueError(f"scale must be 'ntk' or 'mf', got {scale!r}")
    kernels = _recursion(x1, x2, [1.0, 1.0], [1.0, 0.0], "relu", backend)
    if scale == "ntk":
        return kernels
    h = checks.integer("h", h) if h is not None else None
    if h is None:
        raise ValueError("scale='mf' needs the width h: the mean-field kernels are the NTK-scaled ones divided by h")
    return Kernels(kernels.nngp / h, kernels.ntk / h)


def _recursion(x1, x2, weight_vars: list[float], bias_vars: list[float], act: str, backend: str) -> Kernels:
    """The layer recursion with (w_l, b_l) for layers 1..L+1 (the last is the output layer): Sigma_1 by one matrix
    product, the variances Sigma_l(x, x) of every layer on the diagonal (O(N L)), then the elementwise recursion
    ("kernels.fc") over the (N1, N2) matrix."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
    (a, b), kind = as_tensors(x1=x1, x2=x2)
    check_matrix("x1", a)
    if b is not None:
        check_matrix("x2", b, a.shape[1])
    other = a if b is None else b
    n1, n2 = a.shape[0], other.shape[0]
    memory.guard(3 * n1 * n2 * a.element_size(), a.device, what=f"the ({n1}, {n2}) infinite-width kernels",
                 advice="pass x1 and x2 in row blocks")
    name, fc = registry.dispatch("kernels.fc", backend, a.device, what="fc_kernels")
    # Sigma_1 (N1, N2) by one addmm (one pass over the matrix; the backends symmetrise it when b is None)
    sigma = torch.addmm(torch.tensor(bias_vars[0], dtype=a.dtype, device=a.device), a, other.T,
                        alpha=weight_vars[0] / a.shape[1])
    var1 = _variances(a, weight_vars, bias_vars, act)
    var2 = var1 if b is None else _variances(b, weight_vars, bias_vars, act)
    as_vars = dict(dtype=torch.float64, device=a.device)
    nngp, ntk = fc(sigma.contiguous(), var1, var2, torch.tensor(weight_vars[1:], **as_vars),
                   torch.tensor(bias_vars[1:], **as_vars), act=act, symmetric=b is None)
    return Kernels(kind.restore(nngp), kind.restore(ntk))


def _variances(x, weight_vars: list[float], bias_vars: list[float], act: str) -> torch.Tensor:
    """(L, N) the variances Sigma_l(x, x) entering the hidden layers l = 1..L of the recursion, for x (N, d)."""
    var = [weight_vars[0] * (x * x).sum(1) / x.shape[1] + bias_vars[0]]
    for w, c in zip(weight_vars[1:-1], bias_vars[1:-1]):
        var.append(w * torch_expectations(var[-1], var[-1], var[-1], act)[0] + c)
    return torch.stack(var).contiguous()
