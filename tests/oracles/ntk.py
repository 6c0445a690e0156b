"""torch.func oracle of the empirical NTK: Jacobian contraction, the definition itself.

Used by the tests to check every fast path (through :func:`ntk_fp64`), and as the "torch.func" baseline of the
benchmarks (in the model's own dtype).
"""
from __future__ import annotations

import copy

import torch
from torch.func import functional_call, jacrev, vmap

OUTS = ("full", "trace", "diagonal")


def ntk_jacobian_contraction(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
                             out: str = "full") -> torch.Tensor:
    """Theta(x1, x2) = sum over parameters of J(x1) J(x2)^T, with J from vmap(jacrev).

    Shapes: (N1, N2) for a scalar output ((N,) or (N, 1)); for O > 1 outputs, out="full" gives
    (N1, N2, O, O), "trace" (N1, N2) and "diagonal" (N1, N2, O).
    """
    if out not in OUTS:
        raise ValueError(f"out must be one of {OUTS}, got {out!r}")
    params = {name: p.detach() for name, p in model.named_parameters()}

    def f(p, x):
        y = functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)
        return y.reshape(-1)  # (O,)

    def jac(x):
        j = vmap(jacrev(f), (None, 0))(params, x)  # {name: (N, O, *shape)}
        return [v.flatten(2) for v in j.values()]

    j1 = jac(x1)
    j2 = j1 if x2 is None else jac(x2)
    n_out = j1[0].shape[1]
    # one einsum per parameter tensor and per out (so "trace" costs a GEMM of (N, O P), not the full kernel's)
    pattern = "iap,jbp->ijab" if out == "full" or n_out == 1 else "iap,jap->ij" if out == "trace" else "iap,jap->ija"
    kernel = sum(torch.einsum(pattern, a, b) for a, b in zip(j1, j2))
    return kernel[..., 0, 0] if n_out == 1 else kernel


def ntk_fp64(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
             out: str = "full") -> torch.Tensor:
    """The reference of the tests: :func:`ntk_jacobian_contraction` in fp64 on the CPU, from a float64 copy of the
    model and the upcast inputs (fp32 paths are checked against it too; ``model`` is left as it is)."""
    reference = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    upcast = None if x2 is None else x2.detach().to("cpu", torch.float64)
    return ntk_jacobian_contraction(reference, x1.detach().to("cpu", torch.float64), upcast, out)
