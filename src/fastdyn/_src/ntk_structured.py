"""Empirical NTK by structured derivatives (per-layer Gram products), and of any module by Jacobian contraction.

Both paths write the kernel as a sum of *terms*, each a Gram of per-point features:

    Theta[i, j, a, b] = sum_terms  sum_{s, s'} (D[i, a, s, :] . D[j, b, s', :]) * (H[i, s, :] . H[j, s', :] + bias)

* Structured: every parameter belongs to a layer whose parameter gradient factors through its input and its
  output's delta = df/d(output): ``nn.Linear`` (on (N, ..., in) inputs), ``nn.Conv1d`` / ``nn.Conv2d`` (any stride,
  padding, dilation, groups; zero padding), and the affine parts of ``nn.BatchNorm1d/2d`` (eval mode) and
  ``nn.LayerNorm``. Whatever connects them is free: activations, pooling (max pooling through its argmax), flatten,
  dropout in eval mode, residual sums, any ``forward``. One forward (forward hooks keep each layer's input and add
  a zero probe to its output) and one backward per output (O of them) give every layer's delta. Per layer the
  cheaper of two routes by a flop count (the choice of Novak et al. 2022's structured derivatives):

  - "gram": D = delta over the S output positions, H = the input patches (for a linear layer S = 1: the Gram of
    deltas times the Gram of inputs, science.md section 2);
  - "gradient": the per-point parameter gradient G = sum_s D_s H_s^T, formed once per point, then D = G, H = 1.

  A first point is checked against autograd's parameter gradients before the path is used, so a model that uses a
  layer's weights outside its forward (weight tying) or calls a layer twice falls back to the generic path.
* Generic (any module): one term per group of parameters with D = the Jacobian block df/dtheta_group
  (torch.func ``vmap(jacrev)``) and H = 1.

Work is tiled over chunks of points; with x2=None only blocks on and above the diagonal are computed and the
result is mirrored, so it is exactly symmetric. Output conventions follow the torch.func oracle
``tests/oracles/ntk.py``: (N1, N2) for a scalar output; for O > 1 outputs out="full" gives (N1, N2, O, O),
"trace" (N1, N2) and "diagonal" (N1, N2, O). Inputs are (N, ...) of any trailing shape the model accepts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import blas
from torch import nn
from torch.func import functional_call, jacrev, vmap

from . import memory

OUTS = ("full", "trace", "diagonal")

# Bytes of one chunk's features, and of one block's Gram temporaries (the chunk size is picked so both fit).
BLOCK_BYTES = 256 * 2**20
# Features of all chunks are kept (not recomputed for every block) when they fit in CACHE_BLOCKS blocks or in a
# quarter of the memory available (per-point gradients of a CNN, N O P numbers, are worth keeping: recomputing them
# per block costs a forward and backward each time).
CACHE_BLOCKS = 4

_CONVS = (nn.Conv1d, nn.Conv2d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_LAYERS = (nn.Linear, *_CONVS, *_BATCH_NORMS, nn.LayerNorm)


@dataclass(frozen=True)
class LayerRoute:
    """How one layer's part of the NTK was computed.

    Attributes:
        name: the layer's qualified name in the model ("" for the model itself), as in ``model.named_modules()``.
        kind: its class name, e.g. "Conv2d".
        route: "gram" (Gram of deltas times Gram of input patches), "gradient" (Gram of per-point parameter
            gradients) or "jacobian" (torch.func Jacobian blocks, the generic path).
        parameters: its number of parameters.
    """

    name: str
    kind: str
    route: str
    parameters: int


# ----------------------------------------------------------------------------------------------------------------
# Which models the structured path knows


def _stock_layer(module: nn.Module) -> bool:
    """A listed layer with its stock forward, its own parameters only, in a state where it is per-point affine."""
    cls = next((c for c in _LAYERS if isinstance(module, c)), None)
    if cls is None or type(module).forward is not cls.forward or torch.nn.utils.parametrize.is_parametrized(module):
        return False
    if isinstance(module, _CONVS):
        padding = module.padding
        return module.padding_mode == "zeros" and (padding != "same" or all(
            d * (k - 1) % 2 == 0 for d, k in zip(module.dilation, module.kernel_size)))  # "same" only if symmetric
    if isinstance(module, _BATCH_NORMS):
        # eval mode with running statistics: an affine map per channel (train mode couples the points of a batch)
        return module.affine and not module.training and module.running_mean is not None
    if isinstance(module, nn.LayerNorm):
        return module.elementwise_affine
    return True


def _structured_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The (name, layer) pairs owning the model's parameters if the structured path may apply, else None."""
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules()):
        return None
    layers, owned = [], set()
    for name, module in model.named_modules(remove_duplicate=False):  # a layer placed twice appears twice
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if not _stock_layer(module):
            return None
        layers.append((name, module))
        owned.update(id(p) for p in own)
    # every parameter owned exactly once (a shared layer or parameter would be counted once per use by the sum)
    if not layers or len(owned) != len(list(model.parameters())) or \
            sum(len(list(m.parameters(recurse=False))) for _, m in layers) != len(owned) or \
            len({id(m) for _, m in layers}) != len(layers):
        return None
    return layers


def is_structured(model: nn.Module) -> bool:
    """True if every parameter of ``model`` belongs to an ``nn.Linear``, ``nn.Conv1d`` / ``nn.Conv2d`` (zero padding),
    eval-mode ``nn.BatchNorm1d/2d`` or ``nn.LayerNorm`` with its stock forward, no layer or parameter is shared and
    no module has hooks. The forward connecting them may be anything; :func:`structured_ntk` also checks the
    first point against autograd (a layer called twice or a weight used outside its layer is not visible here)."""
    return _structured_layers(model) is not None


# ----------------------------------------------------------------------------------------------------------------
# Terms and their blockwise contraction


@dataclass
class _Term:
    """One summand of the kernel for one chunk of points.

    delta: (c, O, w) per-output features, or None for the identity (delta[i, a, k] = [a == k]); or, with S
        positions and g groups, (c, O, S, g, o), contracted over all pairs of positions with h (c, S, g, k).
    h: (c, v) features whose Gram (+ bias) multiplies the delta Gram, or None for a factor 1.
    """

    delta: torch.Tensor | None
    h: torch.Tensor | None = None
    bias: bool = False


def _gram(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """a @ b^T; when b is None, a @ a^T of which only the upper triangle is meant (the caller completes each
    diagonal block once, by :func:`_mirror_upper`)."""
    if b is not None:
        return a @ b.T
    if a.device.type == "cpu":
        # torch.mm does a full GEMM for a @ a.T; BLAS syrk does half the flops and fills one triangle. (numpy's
        # a @ a.T calls syrk too but mirrors the triangle after each call: 0.2 s of a 0.9 s (10000, 2572) Gram.)
        # A C-contiguous (c, w) array is a Fortran (w, c) one; syrk's Fortran lower triangle is the C upper one.
        a_np = np.ascontiguousarray(a.detach().numpy())
        syrk = blas.dsyrk if a_np.dtype == np.float64 else blas.ssyrk
        return torch.from_numpy(syrk(1.0, a_np.T, trans=1, lower=1).T)
    return a @ a.T


def _mirror_upper(block: torch.Tensor) -> None:
    """Complete a diagonal block from its upper part, exactly symmetric: K[i, j] = K[j, i] for i > j, with the
    output pair swapped for a (c, c, O, O) block, whose points' own (O, O) blocks come from their upper triangle."""
    if block.ndim == 4:
        own = block.diagonal(0, 0, 1).permute(2, 0, 1)  # (c, O, O) view of K[i, i]
        own.copy_(torch.triu(own) + torch.triu(own, 1).mT)
    for i in range(1, block.shape[0]):  # a row at a time: no temporary the size of the block
        column = block[:i, i]
        block[i, :i] = column.mT if block.ndim == 4 else column


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


def _add_positions_block(block: torch.Tensor, ti: _Term, tj: _Term | None, out: str, n_out: int,
                         block_bytes: int) -> None:
    """block += sum_g sum_{s, s'} (D_i,s . D_j,s') (H_i,s . H_j,s' + bias) of a term over positions, by GEMMs in
    row slices so one slice's largest temporary fits in block_bytes. tj=None: the same chunk.

    "full" contracts in the cheaper order E[i, a, o, j, s'] = sum_s D[i, a, s, o] HH[i, s, j, s'], then
    sum_{o, s'} E D[j, b, s', o] (S^2 O o + S O^2 o per pair, not the S^2 O^2 o of the delta Gram);
    "trace", "diagonal" and scalar outputs take the delta Gram over positions (S^2 O o) times HH, summed."""
    di, hi = ti.delta, ti.h
    dj, hj = (di, hi) if tj is None else (tj.delta, tj.h)
    ci, _, positions, groups, o = di.shape
    cj = dj.shape[0]
    per_row = cj * positions * max(positions, n_out * o if out == "full" and n_out > 1 else positions)
    rows = max(1, block_bytes // (di.element_size() * 3 * per_row))
    for start in range(0, ci, rows):
        r = slice(start, start + rows)
        n = di[r].shape[0]
        for g in range(groups):
            hh = (hi[r, :, g].reshape(n * positions, -1) @ hj[:, :, g].reshape(cj * positions, -1).T)
            hh = hh.reshape(n, positions, cj, positions)
            if ti.bias:
                hh += 1
            a, b = di[r, :, :, g], dj[:, :, :, g]  # (n, O, S, o), (cj, O, S, o)
            if n_out == 1 or out == "trace":
                dd = a.transpose(1, 2).reshape(n * positions, -1) @ b.transpose(1, 2).reshape(cj * positions, -1).T
                block[r] += torch.einsum("isjt,isjt->ij", dd.reshape(n, positions, cj, positions), hh)
            elif out == "diagonal":
                for k in range(n_out):
                    dd = a[:, k].reshape(n * positions, o) @ b[:, k].reshape(cj * positions, o).T
                    block[r, :, k] += torch.einsum("isjt,isjt->ij", dd.reshape(n, positions, cj, positions), hh)
            else:
                e = torch.bmm(a.permute(0, 1, 3, 2).reshape(n, n_out * o, positions),
                              hh.reshape(n, positions, cj * positions))  # (n, O o, cj S)
                block[r] += torch.einsum("iaojt,jbto->ijab", e.reshape(n, n_out, o, cj, positions), b)


def _add_term_block(block: torch.Tensor, ti: _Term, tj: _Term | None, out: str, n_out: int,
                    block_bytes: int = BLOCK_BYTES) -> None:
    """block += contribution of one term between two chunks (tj=None: the same chunk, where only the upper
    part of the block is meant; see :func:`_mirror_upper`)."""
    if ti.delta is not None and ti.delta.ndim == 5:
        _add_positions_block(block, ti, tj, out, n_out, block_bytes)
        return
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


def _cache_fits(total_bytes: int, device: torch.device, block_bytes: int) -> bool:
    available = memory.available_memory(device) or 0
    return total_bytes <= max(CACHE_BLOCKS * block_bytes, available // 4)


def _chunk_size(n_points: int, bytes_per_point: int, pair_bytes: int, block_bytes: int) -> int:
    """Points per chunk so one chunk's features and one block's Gram temporaries each fit in block_bytes."""
    by_features = block_bytes // max(bytes_per_point, 1)
    by_block = math.isqrt(block_bytes // max(pair_bytes, 1))
    return int(max(1, min(n_points, by_features, by_block)))


def _accumulate(result: torch.Tensor, features: Callable[[torch.Tensor], list[_Term]], x1: torch.Tensor,
                x2: torch.Tensor | None, out: str, n_out: int, chunk: int, cache: bool,
                block_bytes: int = BLOCK_BYTES) -> None:
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
                    _add_term_block(result[si, si], term, None, out, n_out, block_bytes)
                _mirror_upper(result[si, si])
                continue
            tj = column_terms(j)
            # With x2=None the block is also added, transposed, below the diagonal; else straight into result.
            block = torch.zeros_like(result[si, sj]) if x2 is None else result[si, sj]
            for a, b in zip(ti, tj):
                _add_term_block(block, a, b, out, n_out, block_bytes)
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
# Per-layer factors: input patches H (c, S, g, k), deltas D (c, O, S, g, o), per-point gradients G (c, O, P)


def _unfold(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (c, C * K, S) input patches of a Conv1d or Conv2d (F.unfold's layout), by one strided copy of the
    zero-padded input (2-3x faster than F.unfold's im2col here)."""
    x = x.unsqueeze(2) if isinstance(module, nn.Conv1d) else x
    lift = (lambda t: (1, *t)) if isinstance(module, nn.Conv1d) else tuple
    (kh, kw), (dh, dw), (sh, sw) = lift(module.kernel_size), lift(module.dilation), lift(module.stride)
    padding = module.padding
    if padding == "valid":
        padding = (0,) * len(module.kernel_size)
    elif padding == "same":  # symmetric only (see _stock_layer)
        padding = tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
    ph, pw = (0, *padding) if isinstance(module, nn.Conv1d) else padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    c, channels, height, width = x.shape
    out_h, out_w = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    s0, s1, s2, s3 = x.stride()
    view = x.as_strided((c, channels, kh, kw, out_h, out_w), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3))
    return view.reshape(c, channels * kh * kw, out_h * out_w)


def _layer_input(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the layer's parameter gradient needs of its input x: (c, S, in) for Linear, the unfolded patches
    (c, C * K, S) for a convolution, the normalised input x_hat (the input's shape) for a norm layer."""
    x = x.detach()
    c = x.shape[0]
    if isinstance(module, nn.Linear):
        return x.reshape(c, -1, module.in_features).clone()  # a copy: the forward may change x in place later
    if isinstance(module, _CONVS):
        return _unfold(module, x)
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)  # batch norm in eval mode
    return (x - module.running_mean.reshape(shape)) * torch.rsqrt(module.running_var.reshape(shape) + module.eps)


def _patches(module: nn.Module, stored: torch.Tensor) -> torch.Tensor:
    """(c, S, g, k) input patches of a Linear or convolution with g groups and k inputs per group."""
    c = stored.shape[0]
    if isinstance(module, nn.Linear):
        return stored.unsqueeze(2)
    return stored.transpose(1, 2).reshape(c, stored.shape[2], module.groups, -1)


def _positions(module: nn.Module, delta: torch.Tensor) -> torch.Tensor:
    """(c, O, S, g, o) deltas of a Linear or convolution from df/d(output) (c, O, *output shape)."""
    c, n_out = delta.shape[:2]
    if isinstance(module, nn.Linear):
        return delta.reshape(c, n_out, -1, 1, module.out_features)
    per_position = delta.reshape(c, n_out, module.out_channels, -1).transpose(2, 3)
    return per_position.reshape(c, n_out, per_position.shape[2], module.groups, -1)


def _gradient_parts(module: nn.Module, delta: torch.Tensor, stored: torch.Tensor) -> list[torch.Tensor]:
    """(c, P_i) per-point gradients of the layer's parameters (weight, then bias if any, each flattened in its
    own order) from delta = df/d(output) of one output (c, *output shape) and the stored input."""
    c = delta.shape[0]
    if isinstance(module, nn.Linear):
        d = delta.reshape(c, -1, module.out_features)  # (c, S, out); stored (c, S, in)
        parts = [torch.bmm(d.transpose(1, 2), stored).reshape(c, -1)]
        if module.bias is not None:
            parts.append(d.sum(1))
        return parts
    if isinstance(module, _CONVS):
        groups = module.groups
        d = delta.reshape(c * groups, module.out_channels // groups, -1)  # (c g, o, S)
        h = stored.reshape(c * groups, stored.shape[1] // groups, -1)  # (c g, k, S): F.unfold's channel-major rows
        parts = [torch.bmm(d, h.transpose(1, 2)).reshape(c, -1)]  # (c, g o k): the weight's (C_out, C_in / g, K)
        if module.bias is not None:
            parts.append(delta.reshape(c, module.out_channels, -1).sum(2))
        return parts
    if isinstance(module, nn.LayerNorm):
        summed = tuple(range(1, delta.ndim - len(module.normalized_shape)))  # positions before the normalised axes
    else:
        summed = tuple(range(2, delta.ndim))  # batch norm: every axis after the channels

    def over_positions(t):  # (an empty tuple would make torch sum over every axis)
        return (t.sum(summed) if summed else t).reshape(c, -1)

    parts = [over_positions(delta * stored)]
    if module.bias is not None:
        parts.append(over_positions(delta))
    return parts


@dataclass(frozen=True)
class _LayerPlan:
    """One layer of a structured plan: its route and the sizes that priced it (S positions, g groups, o outputs
    and k inputs per group)."""

    name: str
    module: nn.Module
    route: str
    positions: int
    groups: int
    outputs: int
    inputs: int
    parameters: int
    activations: int  # numbers in the layer's output per point


@dataclass(frozen=True)
class StructuredPlan:
    """The layers of a model the structured path runs on, each with its route; see :func:`plan_structured`."""

    layers: tuple[_LayerPlan, ...]
    n_out: int

    @property
    def routes(self) -> tuple[LayerRoute, ...]:
        return tuple(LayerRoute(p.name, type(p.module).__name__, p.route, p.parameters) for p in self.layers)


def _pair_weight(n_out: int, out: str) -> int:
    """Output pairs one pair of points costs: O^2 for "full", O for "trace" / "diagonal", 1 for a scalar output."""
    return 1 if n_out == 1 else n_out * n_out if out == "full" else n_out


# The "full" Gram over positions runs as small batched GEMMs (inner sizes S and o S, outer O): at 8x its flops it
# was still slower than the per-point gradients' one large GEMM (ResNet of bench_ntk_cnn.py, 4x4 stage, Xeon AVX-512).
POSITIONS_FULL_PENALTY = 16


def _route(module: nn.Module, positions: int, groups: int, outputs: int, inputs: int, parameters: int,
           n_out: int, weight: int) -> str:
    """The cheaper route by multiply-adds per pair of points (see :func:`_add_positions_block`): "gram" costs per
    group S^2 (k + O o) + S O_eff o + S^2 O_eff (times POSITIONS_FULL_PENALTY for "full" over S > 1 positions),
    "gradient" O_eff P (the per-point gradients themselves are linear in N)."""
    if not isinstance(module, (nn.Linear, *_CONVS)):
        return "gradient"  # a norm layer's 2C parameters
    s = positions
    gram = groups * (s * s * (inputs + n_out * outputs) + s * weight * outputs + s * s * weight)
    if s > 1 and n_out > 1 and weight == n_out * n_out:
        gram *= POSITIONS_FULL_PENALTY
    return "gram" if gram <= weight * parameters else "gradient"


def _hooked_forward(model: nn.Module, modules: list[nn.Module], x: torch.Tensor):
    """model(x) with every layer's input kept and a zero probe added to its output (so df/d(probe) = delta).

    Returns (y (c, O), stored inputs, probes, calls per layer)."""
    index = {id(m): i for i, m in enumerate(modules)}
    stored: list = [None] * len(modules)
    probes: list = [None] * len(modules)
    calls = [0] * len(modules)

    def hook(module, args, output):
        i = index[id(module)]
        calls[i] += 1
        stored[i] = _layer_input(module, args[0])
        probes[i] = torch.zeros_like(output, requires_grad=True)
        return output + probes[i]

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.enable_grad():
            y = model(x.clone())  # a copy: a first in-place activation must not change the caller's x
            flat = y.reshape(x.shape[0], -1) if isinstance(y, torch.Tensor) and y.ndim >= 1 else None
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(y, torch.Tensor) or y.ndim < 1 or y.shape[0] != x.shape[0]:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"model must map (N, ...) inputs to (N, ...) outputs; on {x.shape[0]} points it "
                         f"returned {shape}")
    return flat, stored, probes, calls


def _matches_autograd(model: nn.Module, modules: list[nn.Module], x: torch.Tensor, y: torch.Tensor,
                      stored: list[torch.Tensor], probes: list[torch.Tensor]) -> bool:
    """Do the per-layer gradients from deltas and inputs (of a hooked forward on x, a few points, outputs summed)
    equal autograd's parameter gradients? False for a weight used outside its layer, a parameter-free module that
    mixes the points of a batch and the like."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    true = torch.func.grad(lambda p: functional_call(model, p, (x.clone(),)).sum())(params)
    by_id = {id(p): true[name] for name, p in model.named_parameters()}
    with torch.enable_grad():
        deltas = torch.autograd.grad(y.sum(), probes, allow_unused=True)
    tol = 1e-9 if x.dtype == torch.float64 else 1e-4
    for module, delta, kept, probe in zip(modules, deltas, stored, probes):
        delta = torch.zeros_like(probe) if delta is None else delta
        ours = torch.cat(_gradient_parts(module, delta, kept), 1).sum(0)
        expected = torch.cat([by_id[id(p)].reshape(-1) for p in module.parameters(recurse=False)])
        if ours.shape != expected.shape or (ours - expected).abs().max() > tol * (1 + expected.abs().max()):
            return False
    return True


def plan_structured(model: nn.Module, x: torch.Tensor, out: str = "full") -> StructuredPlan | None:
    """The structured plan of ``model`` on inputs like ``x`` (N, ...) — each layer's route by its flop count —
    or None when the structured path does not apply (see :func:`is_structured`; the first points are also
    checked against autograd's gradients)."""
    _check_out(out)
    layers = _structured_layers(model)
    if layers is None:
        return None
    modules = [m for _, m in layers]
    probe_points = x[:2]
    y, stored, probes, calls = _hooked_forward(model, modules, probe_points)
    if any(count != 1 for count in calls) or not _matches_autograd(model, modules, probe_points, y, stored, probes):
        return None
    n_out = y.shape[1]
    weight = _pair_weight(n_out, out)
    plans = []
    for (name, module), kept, probe in zip(layers, stored, probes):
        parameters = sum(p.numel() for p in module.parameters(recurse=False))
        activations = probe[0].numel()
        if isinstance(module, (nn.Linear, *_CONVS)):
            h = _patches(module, kept)
            positions, groups, inputs = h.shape[1], h.shape[2], h.shape[3]
            outputs = (module.out_features if isinstance(module, nn.Linear) else module.out_channels) // groups
        else:
            positions, groups, outputs, inputs = activations, 1, 1, 1
        route = _route(module, positions, groups, outputs, inputs, parameters, n_out, weight)
        plans.append(_LayerPlan(name, module, route, positions, groups, outputs, inputs, parameters, activations))
    return StructuredPlan(tuple(plans), n_out)


def _structured_terms(model: nn.Module, plan: StructuredPlan, x: torch.Tensor) -> list[_Term]:
    """One hooked forward and O backward passes on a chunk x (c, ...): a "gram" term per such layer (its deltas
    for all outputs, (c, O, ...), and input patches) and one term of all "gradient" layers' per-point gradients
    side by side, (c, O, sum P), formed for each output as its backward gives the deltas (a "gradient" layer keeps
    no (c, O, ...) delta buffer). A loop of O backward passes measured ~1.5x faster than autograd's vmap-batched
    backward (``is_grads_batched``) on bench_ntk_cnn.py's CNNs."""
    modules = [p.module for p in plan.layers]
    y, stored, probes, _ = _hooked_forward(model, modules, x)
    c, n_out = x.shape[0], plan.n_out
    starts, width = [], 0
    for layer in plan.layers:
        starts.append(width)
        width += layer.parameters if layer.route == "gradient" else 0
    gradients = x.new_empty((c, n_out, width))
    deltas = [p.new_empty((c, n_out, *p.shape[1:])) if layer.route == "gram" else None
              for layer, p in zip(plan.layers, probes)]
    for a in range(n_out):
        cotangent = torch.zeros_like(y)
        cotangent[:, a] = 1
        grads = torch.autograd.grad(y, probes, cotangent, retain_graph=a < n_out - 1, allow_unused=True)
        for layer, grad, probe, kept, delta, start in zip(plan.layers, grads, probes, stored, deltas, starts):
            grad = torch.zeros_like(probe) if grad is None else grad  # None: the output does not use this layer
            if delta is not None:
                delta[:, a] = grad
                continue
            for part in _gradient_parts(layer.module, grad, kept):
                gradients[:, a, start:start + part.shape[1]] = part
                start += part.shape[1]
    del y, probes  # frees the autograd graph
    terms = []
    for layer, delta, kept in zip(plan.layers, deltas, stored):
        if delta is None:
            continue
        d, h = _positions(layer.module, delta), _patches(layer.module, kept)
        bias = layer.module.bias is not None
        if layer.positions == 1 and layer.groups == 1:
            terms.append(_Term(d.reshape(c, n_out, -1), h.reshape(c, -1), bias))
        else:
            terms.append(_Term(d, h, bias))
    if width:
        terms.append(_Term(gradients))
    return terms


def _plan_bytes_per_point(plan: StructuredPlan) -> int:
    """Numbers one point's features and its share of the forward/backward take (times the item size)."""
    total = 0
    for p in plan.layers:
        if p.route == "gram":  # deltas of all outputs, patches
            total += plan.n_out * (p.positions * p.groups * p.outputs + p.activations) + \
                p.positions * p.groups * p.inputs
        else:  # per-point gradients (one output's delta at a time)
            total += plan.n_out * p.parameters
        total += 3 * p.activations  # saved activations, probe, one delta
    return total


@torch.no_grad()
def structured_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str = "full", *,
                   plan: StructuredPlan | None = None, block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """Empirical NTK by structured derivatives (see the module docstring and :func:`is_structured`).

    Args:
        model: a module whose parameters all belong to the listed layers; its points are independent.
        x1: (N1, ...); x2: (N2, ...) or None for Theta(x1, x1) (exactly symmetric, upper blocks only).
        out: "full" | "trace" | "diagonal" for O > 1 outputs (ignored for a scalar output).
        plan: from :func:`plan_structured` (made here when None).
        block_bytes: memory of one chunk's features and of one block's Gram temporaries.

    Returns (N1, N2) for a scalar output, else (N1, N2, O, O) / (N1, N2) / (N1, N2, O) for full / trace / diagonal.
    Cost: per chunk one forward and a backward per output, then per block and "gram" layer a
    Gram of deltas and one of input patches, and one Gram of the "gradient" layers' per-point gradients (syrk on
    the diagonal blocks). Peak memory: the result, plus the features of all chunks when they fit (see
    CACHE_BLOCKS; else two chunks, recomputed per block), plus about three block_bytes of temporaries.
    """
    _check_out(out)
    plan = plan_structured(model, x1, out) if plan is None else plan
    if plan is None:
        raise TypeError(f"model ({type(model).__name__}) is not one the structured path applies to (see "
                        f"is_structured); use generic_ntk")
    item = x1.element_size()
    per_point = item * _plan_bytes_per_point(plan)
    pair = item * _pair_weight(plan.n_out, out) * 3
    n_cols = x1.shape[0] if x2 is None else x2.shape[0]
    chunk = _chunk_size(max(x1.shape[0], n_cols), per_point, pair, block_bytes)
    result = _result(x1, x2, out, plan.n_out)
    cache = _cache_fits(math.ceil(n_cols / chunk) * chunk * per_point, x1.device, block_bytes)
    _accumulate(result, lambda x: _structured_terms(model, plan, x), x1, x2, out, plan.n_out, chunk, cache,
                block_bytes)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Generic: Jacobian contraction with torch.func, chunked over points and parameter groups


def _jacobian_terms(model: nn.Module, names: list[str], params: dict[str, torch.Tensor],
                    x: torch.Tensor) -> list[_Term]:
    """One term: the Jacobian of the flattened output w.r.t. the parameters ``names`` on a chunk x, (c, O, P_g)."""
    fixed = {k: v for k, v in params.items() if k not in names}

    def f(group, xi):
        return functional_call(model, {**fixed, **group}, (xi.unsqueeze(0).clone(),)).reshape(-1)

    jac = vmap(jacrev(f), (None, 0))({k: params[k] for k in names}, x)  # {name: (c, O, *shape)}
    return [_Term(torch.cat([j.flatten(2) for j in jac.values()], dim=2))]


def _start(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str):
    """The detached parameters, the output count O and the zero result of the generic and ntvp paths."""
    _check_out(out)
    params = {name: p.detach() for name, p in model.named_parameters()}
    with torch.no_grad():
        n_out = model(x1[:1]).reshape(-1).numel()
    return params, n_out, _result(x1, x2, out, n_out)


def generic_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str = "full", *,
                block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """Empirical NTK of any module by Jacobian contraction (torch.func ``vmap(jacrev)``), chunked.

    Args as :func:`structured_ntk`; the model maps (N, ...) to (N, ...) and its output per point is flattened to O.

    Parameters are packed in groups and points in chunks so one chunk's Jacobian block (chunk * O * P_group
    numbers) fits in block_bytes (a single parameter tensor larger than that gets chunks of one point). Peak
    memory: the result, plus the Jacobian blocks of all chunks of one group when they fit (see CACHE_BLOCKS; else
    two, recomputed per block), plus torch.func's backward of a chunk (about chunk * O activations of the model),
    plus about three block_bytes of Gram temporaries.
    """
    params, n_out, result = _start(model, x1, x2, out)
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
        cache = _cache_fits(math.ceil(n_cols / chunk) * chunk * group_bytes, x1.device, block_bytes)
        _accumulate(result, lambda x, names=names: _jacobian_terms(model, names, params, x), x1, x2, out, n_out,
                    chunk, cache, block_bytes)
    return result


# ----------------------------------------------------------------------------------------------------------------
# NTK-vector products: no Jacobian of x1 and no per-layer features, for models with many outputs or parameters


def ntvp_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, out: str = "full", *,
             block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """Empirical NTK of any module by NTK-vector products (neural-tangents' NTK_VECTOR_PRODUCTS).

    For a chunk of columns, ``vjp`` gives the parameter gradient of each (point, output) pair (rows of J(x2)),
    and a ``jvp`` of the model on a chunk of x1 along each of them gives a column block J(x1) J(x2)^T; J(x1) is
    never formed. Memory: one column chunk's rows (chunk * O * P numbers, at most block_bytes), the jvps'
    activations, and the result only in the ``out`` asked for ((N1, N2) for "trace": no (N1, N2, O, O)).
    Cost: about N2 * O forward-mode passes over x1 (so slower than the structured path where both apply).
    Args and result as :func:`structured_ntk`.
    """
    params, n_out, result = _start(model, x1, x2, out)
    if not params:
        return result
    xc = x1 if x2 is None else x2
    item, n_params = x1.element_size(), sum(p.numel() for p in params.values())
    cols = max(1, min(xc.shape[0], block_bytes // (item * n_out * n_params)))
    rows = max(1, min(x1.shape[0], block_bytes // (item * cols * n_out * n_out * 4)))

    def f(p, x):
        return functional_call(model, p, (x.clone(),)).reshape(x.shape[0], -1)

    for j in range(0, xc.shape[0], cols):
        xj = xc[j:j + cols]
        cj = xj.shape[0]
        _, vjp_fn = torch.func.vjp(lambda p: f(p, xj), params)
        cotangents = torch.eye(cj * n_out, dtype=x1.dtype, device=x1.device).reshape(cj * n_out, cj, n_out)
        (gradients,) = vmap(vjp_fn)(cotangents)  # {name: (cj * O, *shape)}
        for i in range(0, x1.shape[0], rows):
            if x2 is None and i >= j + cj:
                break  # below the diagonal: mirrored from the upper blocks
            xi = x1[i:i + rows]
            ci = xi.shape[0]
            push = vmap(lambda t: torch.func.jvp(lambda p: f(p, xi), (params,), (t,))[1])
            block = push(gradients).reshape(cj, n_out, ci, n_out).permute(2, 0, 3, 1)  # (ci, cj, a, b)
            if n_out == 1:
                block = block[..., 0, 0]
            elif out != "full":
                block = block.diagonal(dim1=-2, dim2=-1)
                block = block.sum(-1) if out == "trace" else block
            result[i:i + ci, j:j + cj] = block
            if x2 is None:
                result[j:j + cj, i:i + ci] = block.transpose(0, 1).transpose(2, 3) if block.ndim == 4 \
                    else block.transpose(0, 1)
    if x2 is None:  # blocks on the diagonal band were written twice: make the result exactly symmetric
        mirrored = result.transpose(0, 1).transpose(2, 3) if result.ndim == 4 else result.transpose(0, 1)
        result = (result + mirrored) / 2
    return result
