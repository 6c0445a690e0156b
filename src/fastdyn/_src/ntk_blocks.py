"""Kernels larger than memory: the NTK in (B1, B2) blocks of points, into RAM or into a ``.npy`` file on disk.

:func:`fill_blocks` calls ``compute(x1_rows, x2_cols)`` block by block (``x2_cols=None`` on the diagonal blocks of
a symmetric kernel, whose lower blocks are mirrored). With ``file`` the kernel is a ``.npy`` written block by block
through a memory map opened per block (so the resident memory stays about one block, whatever N), and a
``<file>.progress.json`` beside it records the finished blocks (replaced atomically after each one): a run
interrupted at any point resumes where it stopped, and a finished one returns at once. The progress file carries a
fingerprint of the inputs, the parameters and the arguments, so a file made for a different kernel is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .optional import progress_bar


def _fingerprint(tensors: list[torch.Tensor | None], settings: dict) -> str:
    """sha256 of the tensors' bytes, shapes and dtypes and of the JSON settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _blocks(n1: int, n2: int, block: tuple[int, int], symmetric: bool) -> list[tuple[int, int]]:
    """(row start, column start) of every block to compute, row-major; upper blocks only when symmetric."""
    b1, b2 = block
    return [(i, j) for i in range(0, n1, b1) for j in range(0, n2, b2) if not symmetric or j + b2 > i]


def check_block(block, symmetric: bool) -> tuple[int, int]:
    """block as (B1, B2) of positive ints; a symmetric kernel needs B1 == B2 (its blocks are mirrored)."""
    if isinstance(block, int) and not isinstance(block, bool):
        block = (block, block)
    if not (isinstance(block, (tuple, list)) and len(block) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
        raise ValueError(f"block must be a positive int B or a pair (B1, B2) of positive ints, got {block!r}")
    if symmetric and block[0] != block[1]:
        raise ValueError(f"block must be square (B, B) when x2 is None (the kernel is mirrored), got {block!r}")
    return int(block[0]), int(block[1])


def fill_blocks(compute: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], x1: torch.Tensor,
                x2: torch.Tensor | None, trailing: tuple[int, ...], block: tuple[int, int], *,
                file: str | os.PathLike | None, fingerprint: Callable[[], str], progress: bool = True):
    """The kernel (N1, N2, *trailing) from its blocks: a torch tensor, or with ``file`` a read-only np.memmap
    of the finished ``.npy``. ``fingerprint`` is called only when a file is written (it hashes the inputs)."""
    symmetric = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if symmetric else x2.shape[0]
    shape = (n1, n2, *trailing)
    todo = _blocks(n1, n2, block, symmetric)
    b1, b2 = block
    if file is None:
        result = torch.empty(shape, dtype=x1.dtype, device=x1.device)
        for i, j in progress_bar(todo, "ntk blocks", enabled=progress and len(todo) > 1):
            _write(result, compute, x1, x2, i, j, b1, b2, symmetric)
        return result

    path = Path(file)
    if path.suffix != ".npy":
        raise ValueError(f"file must name a .npy file, got {str(file)!r}")
    state_path = path.with_name(path.name + ".progress.json")
    key = fingerprint()
    dtype = np.dtype(str(x1.dtype).removeprefix("torch."))
    done: set[tuple[int, int]] = set()
    if state_path.exists() and path.exists():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") != key or tuple(state.get("shape", ())) != shape:
            raise ValueError(f"file {str(path)!r} holds a different kernel (other inputs, parameters, out, dtype or "
                             f"block); delete it and {state_path.name}, or pick another file")
        done = {tuple(b) for b in state["done"]}
    else:
        if path.exists():
            raise ValueError(f"file {str(path)!r} exists without its {state_path.name}; delete it or pick "
                             f"another file (fastdyn does not overwrite a kernel it did not write)")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # a sparse file
        _save_state(state_path, key, shape, done)
    for i, j in progress_bar([b for b in todo if b not in done], "ntk blocks", enabled=progress):
        kernel = np.load(path, mmap_mode="r+")  # mapped per block: resident memory stays about one block
        _write(kernel, compute, x1, x2, i, j, b1, b2, symmetric)
        kernel.flush()
        del kernel
        done.add((i, j))
        _save_state(state_path, key, shape, done)
    return np.load(path, mmap_mode="r")


def _write(target, compute, x1, x2, i, j, b1, b2, symmetric) -> None:
    """target[rows, cols] = the block (and its mirror below the diagonal when symmetric)."""
    rows, cols = slice(i, i + b1), slice(j, j + b2)
    if symmetric and i == j:
        value = compute(x1[rows], None)
    else:
        value = compute(x1[rows], (x1 if symmetric else x2)[cols])
    numpy_target = isinstance(target, np.ndarray)
    target[rows, cols] = value.cpu().numpy() if numpy_target else value
    if symmetric and i != j:
        mirrored = value.transpose(0, 1)
        if mirrored.ndim == 4:
            mirrored = mirrored.transpose(2, 3)
        target[cols, rows] = mirrored.cpu().numpy() if numpy_target else mirrored


def _save_state(path: Path, key: str, shape: tuple, done: set) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"fingerprint": key, "shape": list(shape), "done": sorted(done)}))
    os.replace(tmp, path)
