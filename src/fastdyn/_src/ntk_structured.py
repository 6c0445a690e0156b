"""Empirical NTK of deep MLPs by structured derivatives, and of any module by chunked Jacobian contraction.

Both paths write the kernel as a sum of *terms*, each a Gram of per-point features:

    Theta[i, j, a, b] = sum_terms  (sum_k D[i, a, k] D[j, b, k]) * K[i, j]

* Structured (``nn.Sequential`` of ``nn.Linear`` and elementwise activations, layers l = 1..L,
  g_l = W_l h_{l-1} + b_l, h_l = phi(g_l), h_0 = x): one term per linear layer with D = delta_l = df/dg_l
  (per output) and K = h_{l-1} h_{l-1}'^T + 1[bias] (science.md section 2; the idea of Novak et al. 2022).
  One forward and one explicit backward per chunk of points, phi' by formula; no P-sized Jacobian row exists.
* Generic (any module): one term per group of parameters with D = the Jacobian block df/dtheta_group
  (torch.func ``vmap(jacrev)``) and K = 1.

Work is tiled over chunks of points; with x2=None only blocks on and above the diagonal are computed and the
result is mirrored, so it is exactly symmetric. Output conventions follow
the torch.func oracle ``tests/oracles/ntk.py``: (N1, N2) for a scalar output; for O > 1 outputs
out="full" gives (N1, N2, O, O), "trace" (N1, N2) and "diagonal" (N1, N2, O).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

OUTS = ("full", "trace", "diagonal")

# Bytes of one chunk's features, and of one block's Gram temporaries (the chunk size is picked so both fit).
BLOCK_BYTES = 256 * 2**20
# Features of all chunks are kept (not recomputed for every block) when they fit in CACHE_BLOCKS blocks.
CACHE_BLOCKS = 4

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.Softplus, nn.Identity)


# ----------------------------------------------------------------------------------------------------------------
# Which models the structured path knows


def _flatten(module: nn.Module) -> list[nn.Module] | None:
    """The layers of a (nested) plain nn.Sequential in call order, or None if it is not one."""
    if type(module).forward is not nn.Sequential.forward:
        return None
    layers: list[nn.Module] = []
    for child in module:
        if isinstance(child, nn.Sequential):
            inner = _flatten(child)
            if inner is None:
                return None
            layers.extend(inner)
        else:
            layers.append(child)
    return layers


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _known_layer(module: nn.Module) -> bool:
    """An nn.Linear or a listed activation whose forward is the stock one, without hooks or parametrizations."""
    if _has_hooks(module) or torch.nn.utils.parametrize.is_parametrized(module):
        return False
    return any(isinstance(module, cls) and type(module).forward is cls.forward for cls in (nn.Linear, *_ACTIVATIONS))


def _layers(model: nn.Module) -> list[nn.Module] | None:
    """The layer list if the structured path applies to ``model``, else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = _flatten(model)
    if layers is None or any(_has_hooks(m) for m in model.modules()):
        return None
    if not layers or not all(_known_layer(m) for m in layers):
        return None
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    # A linear layer used twice shares its parameters between two places: the per-layer sum would count it wrong.
    if not linears or len({id(m) for m in linears}) != len(linears):
        return None
    # Every parameter must belong to a linear layer (the reference sums over all named parameters).
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != sum(p.numel() for m in linears for p in m.parameters(recurse=False)):
        return None
    return layers


def is_structured(model: nn.Module) -> bool:
    """True if ``model`` is an nn.Sequential (nested ones allowed) of only nn.Linear and the elementwise
    activations ReLU, LeakyReLU, Tanh, GELU, Sigmoid, Softplus, Identity (e.g. :class:`fastdyn.models.FCNet`)."""
    return _layers(model) is not None


# ----------------------------------------------------------------------------------------------------------------
# Activation derivatives, by formula (the same branch choices as torch autograd at kinks)


def _activation_derivative(module: nn.Module, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """phi'(g) for the activation ``module``, given its input g and output y = phi(g)."""
    if isinstance(module, nn.ReLU):
        return torch.sign(y)  # 1[g > 0] in one pass, since y = relu(g) >= 0
    if isinstance(module, nn.LeakyReLU):
        return torch.where(g > 0, torch.ones_like(g), torch.full_like(g, module.negative_slope))
    if isinstance(module, nn.Tanh):
        return 1 - y * y
    if isinstance(module, nn.Sigmoid):
        return y * (1 - y)
    if isinstance(module, nn.Softplus):
        bg = module.beta * g
        return torch.where(bg > module.threshold, torch.ones_like(g), torch.sigmoid(bg))
    if isinstance(module, nn.GELU):
        if module.approximate == "tanh":
            c = math.sqrt(2 / math.pi)
            t = torch.tanh(c * (g + 0.044715 * g**3))
            return 0.5 * (1 + t) + 0.5 * g * (1 - t * t) * c * (1 + 3 * 0.044715 * g * g)
        cdf = 0.5 * (1 + torch.erf(g / math.sqrt(2)))
        pdf = torch.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)
        return cdf + g * pdf
    raise TypeError(f"no derivative for {type(module).__name__}")  # unreachable after _layers()


# ----------------------------------------------------------------------------------------------------------------
# Terms and their blockwise contraction


@dataclass
class _Term:
    """One summand of the kernel for one chunk of points.

    delta: (c, O, w) per-output features, or None for the identity (delta[i, a, k] = [a == k]).
    h: (c, v) features whose Gram (+ bias) multiplies the delta Gram, or None for a factor 1.
    """

    delta: torch.Tensor | None
    h: torch.Tensor | None = None
    bias: bool = False


def _gram(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """a @ b^T, or the exactly symmetric a @ a^T when b is None (half the flops on CPU)."""
    if b is not None:
        return a @ b.T
    if a.device.type == "cpu":
        # torch.mm does a full GEMM for a @ a.T; numpy's matmul recognises the pattern and calls BLAS syrk
        # (half the flops) and mirrors the triangle, so the result is exactly symmetric. Zero-copy views.
        a_np = np.ascontiguousarray(a.detach().numpy())
        return torch.from_numpy(a_np @ a_np.T)
    g = a @ a.T
    return torch.triu(g) + torch.triu(g, 1).T


def _delta_block(di: torch.Tensor, dj: torch.Tensor | None, out: str) -> torch.Tensor:
    """Contract delta features of two chunks: (ci, cj) if O == 1 or out="trace", (ci, cj, O) for "diagonal",
    (ci, cj, O, O) for "full". dj=None means the same chunk (symmetric)."""
    ci, n_out, w = di.shape
    if n_out == 1:
        return _gram(di[:, 0], None if dj is None else dj[:, 0])
    if out == "trace":
        return _gram(di.reshape(ci, n_out * w), None if dj is None else dj.reshape(dj.shape[0], n_out * w))
    if out == "diagonal":
        return torch.stack([_gram(di[:, a].contiguous(), None if dj is None else dj[:, a]) for a in range(n_out)], -1)
    cj = ci if dj is None else dj.shape[0]
    g = _gram(di.reshape(ci * n_out, w), None if dj is None else dj.reshape(cj * n_out, w))
    return g.reshape(ci, n_out, cj, n_out).permute(0, 2, 1, 3)


def _add_term_block(block: torch.Tensor, ti: _Term, tj: _Term | None, out: str, n_out: int) -> None:
    """block += contribution of one term between two chunks (tj=None: the same chunk)."""
    k = None
    if ti.h is not None:
        k = _gram(ti.h, None if tj is None else tj.h)
        if ti.bias:
            k += 1
    if ti.delta is None:  # identity delta: only a == b contributes, with weight K
        if k is None:
            k = torch.ones(block.shape[:2], dtype=block.dtype, device=block.device)
        if n_out == 1:
            block += k
        elif out == "trace":
            block.add_(k, alpha=n_out)
        elif out == "diagonal":
            block += k[:, :, None]
        else:
            block.diagonal(dim1=-2, dim2=-1).add_(k[:, :, None])
        return
    dd = _delta_block(ti.delta, None if tj is None else tj.delta, out)
    if k is None:
        block += dd
    elif n_out == 1 or out == "trace":
        block.addcmul_(dd, k)
    else:
        block.addcmul_(dd, k.reshape(k.shape + (1,) * (dd.ndim - 2)))


def _chunk_size(n_points: int, bytes_per_point: int, pair_bytes: int, block_bytes: int) -> int:
    """Points per chunk so one chunk's features and one block's Gram temporaries each fit in block_bytes."""
    by_features = block_bytes // max(bytes_per_point, 1)
    by_block = math.isqrt(block_bytes // max(pair_bytes, 1))
    return int(max(1, min(n_points, by_features, by_block)))


def _accumulate(result: torch.Tensor, features: Callable[[torch.Tensor], list[_Term]], x1: torch.Tensor,
                x2: torch.Tensor | None, out: str, n_out: int, chunk: int, cache: bool) -> None:
    """result += sum of the terms of ``features`` over all blocks of points (upper blocks mirrored if x2 is None).

    ``cache``: keep every chunk's features instead of recomputing the column chunk for each row chunk.
    """
    rows = list(range(0, x1.shape[0], chunk))
    cols = rows if x2 is None else list(range(0, x2.shape[0], chunk))
    xc = x1 if x2 is None else x2
    stored: dict[int, list[_Term]] = {}

    def column_terms(start: int) -> list[_Term]:
        if start in stored:
            return stored[start]
        terms = features(xc[start:start + chunk])
        if cache:
            stored[start] = terms
        return terms

    for i in rows:
        ti = column_terms(i) if x2 is None else features(x1[i:i + chunk])
        si = slice(i, i + chunk)
        for j in cols:
            if x2 is None and j < i:
                continue
            sj = slice(j, j + chunk)
            if x2 is None and j == i:
                for term in ti:
                    _add_term_block(result[si, si], term, None, out, n_out)
                continue
            tj = column_terms(j)
            # With x2=None the block is also added, transposed, below the diagonal; else straight into result.
            block = torch.zeros_like(result[si, sj]) if x2 is None else result[si, sj]
            for a, b in zip(ti, tj):
                _add_term_block(block, a, b, out, n_out)
            if x2 is None:
                result[si, sj] += block
                result[sj, si] += block.transpose(0, 1).transpose(2, 3) if block.ndim == 4 else block.transpose(0, 1)
        if x2 is None:
            stored.pop(i, None)  # row chunk i is never a column again


def _result(x1: torch.Tensor, x2: torch.Tensor | None, out: str, n_out: int) -> torch.Tensor:
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    trailing = () if n_out == 1 or out == "trace" else (n_out,) if out == "diagonal" else (n_out, n_out)
    return torch.zeros((n1, n2, *trailing), dtype=x1.dtype, device=x1.device)


def _check_out(out: str) -> None:
    if out not in OUTS:
        raise ValueError(f"out must be one of {OUTS}, got {out!r}")


# ----------------------------------------------------------------------------------------------------------------
# Structured derivatives


def _mlp_terms(layers: list[nn.Module], x: torch.Tensor) -> list[_Term]:
    """One forward and one explicit backward of the MLP on a chunk x (c, d_in): a term per linear layer."""
    # Elementwise passes over (c, width) arrays cost as much as a GEMM here, so tensors this function made
    # itself ("owned") are updated in place; x and views of the weights never are.
    tape: list[tuple[nn.Module, torch.Tensor]] = []  # (linear, its input) or (activation, phi'(its input))
    h, owned = x, False
    for module in layers:
        if isinstance(module, nn.Identity):
            continue
        if isinstance(module, nn.Linear):
            tape.append((module, h))
            h, owned = torch.nn.functional.linear(h, module.weight, module.bias), True
        elif isinstance(module, nn.ReLU):
            h = torch.relu_(h) if owned else torch.relu(h)  # the pre-activation is not needed afterwards
            tape.append((module, _activation_derivative(module, h, h)))
            owned = True
        else:
            y = module(h.clone() if getattr(module, "inplace", False) else h)
            tape.append((module, _activation_derivative(module, h, y)))
            h, owned = y, True
    linears_left = sum(isinstance(m, nn.Linear) for m, _ in tape)
    terms: list[_Term] = []
    delta, owned = None, False  # df/d(current tensor), (c, O, width); None = identity
    for module, saved in reversed(tape):
        if linears_left == 0:
            break
        if isinstance(module, nn.Linear):
            terms.append(_Term(delta, saved, module.bias is not None))
            linears_left -= 1
            if linears_left:
                w = module.weight.detach()
                if delta is None:
                    delta, owned = w.unsqueeze(0).expand(x.shape[0], -1, -1), False  # a view of the weights
                else:
                    c, n_out, width = delta.shape
                    delta, owned = (delta.reshape(c * n_out, width) @ w).reshape(c, n_out, -1), True
        elif delta is None:
            delta, owned = torch.diag_embed(saved), True
        elif owned:
            delta.mul_(saved[:, None, :])
        else:
            delta, owned = delta * saved[:, None, :], True
    return terms


def _mlp_output_size(layers: list[nn.Module], d_in: int) -> int:
    size = d_in
    for module in layers:
        if isinstance(module, nn.Linear):
            size = module.out_features
    return size


@torch.no_grad()
def structured_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str = "full", *,
                   block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """Empirical NTK of an MLP (see :func:`is_structured`) by structured derivatives.

    Args:
        model: an nn.Sequential of nn.Linear and elementwise activations.
        x1: (N1, d_in); x2: (N2, d_in) or None for Theta(x1, x1) (exactly symmetric, upper blocks only).
        out: "full" | "trace" | "diagonal" for O > 1 outputs (ignored for a scalar output).
        block_bytes: memory of one chunk's features and of one block's Gram temporaries.

    Returns (N1, N2) for a scalar output, else (N1, N2, O, O) / (N1, N2) / (N1, N2, O) for full / trace / diagonal.
    Cost: per chunk one forward and backward (deltas for all O outputs at once), then per layer and block a Gram of
    deltas and one of activations (syrk on the diagonal blocks). Peak memory: the result, plus the features of all
    chunks when they fit in CACHE_BLOCKS * block_bytes (else two chunks, recomputed per block), plus about three
    block_bytes of temporaries.
    """
    _check_out(out)
    layers = _layers(model)
    if layers is None:
        raise TypeError(f"model must be an nn.Sequential of nn.Linear and elementwise activations, "
                        f"got {type(model).__name__}; use generic_ntk")
    n_out = _mlp_output_size(layers, x1.shape[1])
    item = x1.element_size()
    widths = sum(m.in_features + n_out * m.out_features for m in layers if isinstance(m, nn.Linear))
    widths += sum(n_out * m.in_features for m in layers if isinstance(m, nn.Linear))  # activation phi' and temporaries
    pair = item * (n_out**2 if out == "full" else 1 if out == "trace" else n_out) * 3
    chunk = _chunk_size(max(x1.shape[0], 0 if x2 is None else x2.shape[0]), item * widths, pair, block_bytes)
    result = _result(x1, x2, out, n_out)
    n_cols = x1.shape[0] if x2 is None else x2.shape[0]
    cache = math.ceil(n_cols / chunk) * chunk * item * widths <= CACHE_BLOCKS * block_bytes
    _accumulate(result, lambda x: _mlp_terms(layers, x), x1, x2, out, n_out, chunk, cache)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Generic: Jacobian contraction with torch.func, chunked over points and parameter groups


def _jacobian_terms(model: nn.Module, names: list[str], params: dict[str, torch.Tensor],
                    x: torch.Tensor) -> list[_Term]:
    """One term: the Jacobian of the flattened output w.r.t. the parameters ``names`` on a chunk x, (c, O, P_g)."""
    fixed = {k: v for k, v in params.items() if k not in names}

    def f(group, xi):
        return functional_call(model, {**fixed, **group}, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), (None, 0))({k: params[k] for k in names}, x)  # {name: (c, O, *shape)}
    return [_Term(torch.cat([j.flatten(2) for j in jac.values()], dim=2))]


def generic_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str = "full", *,
                block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """Empirical NTK of any module by Jacobian contraction (torch.func ``vmap(jacrev)``), chunked.

    Args as :func:`structured_ntk`; the model maps (N, d_in) to (N, ...) and its output per point is flattened to O.

    Parameters are packed in groups and points in chunks so one chunk's Jacobian block (chunk * O * P_group
    numbers) fits in block_bytes (a single parameter tensor larger than that gets chunks of one point). Peak
    memory: the result, plus the Jacobian blocks of all chunks of one group when they fit in
    CACHE_BLOCKS * block_bytes (else two, recomputed per block), plus torch.func's backward of a chunk
    (about chunk * O activations of the model), plus about three block_bytes of Gram temporaries.
    """
    _check_out(out)
    params = {name: p.detach() for name, p in model.named_parameters()}
    with torch.no_grad():
        n_out = model(x1[:1]).reshape(-1).numel()
    result = _result(x1, x2, out, n_out)
    if not params:
        return result
    item = x1.element_size()
    n_points = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
    pair = item * (n_out**2 if out == "full" else 1 if out == "trace" else n_out) * 3
    chunk = _chunk_size(n_points, 0, pair, block_bytes)
    largest = max(p.numel() for p in params.values())
    chunk = max(1, min(chunk, block_bytes // (item * n_out * largest)))
    group_size = max(largest, block_bytes // (item * n_out * chunk))
    groups: list[list[str]] = [[]]
    size = 0
    for name, p in params.items():
        if size + p.numel() > group_size and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += p.numel()
    n_cols = x1.shape[0] if x2 is None else x2.shape[0]
    for names in groups:
        group_bytes = item * n_out * sum(params[k].numel() for k in names)
        cache = math.ceil(n_cols / chunk) * chunk * group_bytes <= CACHE_BLOCKS * block_bytes
        _accumulate(result, lambda x, names=names: _jacobian_terms(model, names, params, x), x1, x2, out, n_out,
                    chunk, cache)
    return result
