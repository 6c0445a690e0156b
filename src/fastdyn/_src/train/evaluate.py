"""Outputs and gradients of the network (:class:`Evaluator`); the alpha-trick objective of a run (:class:`Problem`)."""
from __future__ import annotations

import hashlib
import time
from typing import Callable

import torch
from torch import nn

from ...models import OneHidden
from ..arrays import check_finite, onehidden_parameters
from ..backends import BACKENDS
from ..registry import dispatch
from .losses import loss_derivative, loss_terms


class Evaluator:
    """Outputs f(x) and gradients sum_mu g_mu df(x_mu)/dw: fused kernels for ReLU OneHidden, else autograd."""

    def __init__(self, model: nn.Module, fused: bool | str, backend: str):
        if fused not in (True, False, "auto"):  # a string such as "no" would otherwise count as True
            raise ValueError(f"fused must be True, False or 'auto', got {fused!r}")
        if backend != "auto" and backend not in BACKENDS:  # checked also where no fused kernel runs
            raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {backend!r}")
        available = isinstance(model, OneHidden) and model.act == "relu"
        if fused == "auto":
            fused = available
        elif fused and not available:
            raise ValueError("fused=True needs a fastdyn.models.OneHidden with act='relu'; "
                             f"got {type(model).__name__}" + (f" act={model.act!r}" if isinstance(model, OneHidden) else ""))
        self.model, self.fused, self.backend = model, bool(fused), backend
        if self.fused:  # resolve once; x is checked once by train(), the weights at every evaluation
            self.backend, self._forward = dispatch("onehidden.forward", backend, model.omega.device,
                                                   what="fused training")
            self._gradient = dispatch("onehidden.gradient", self.backend, model.omega.device)[1]
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("model has no trainable parameters")
        self.seconds = 0.0  # spent in output_and_gradient

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) without autograd, (N,) or (N, C)."""
        if self.fused:
            omega, b, beta = onehidden_parameters(self.model, x)
            return self._forward(x, omega, b, beta, scale=self.model.output_scale)
        with torch.no_grad():
            return _squeeze(self.model(x))

    def output_and_gradient(self, x: torch.Tensor, g_of_f: Callable[[torch.Tensor], torch.Tensor]):
        """(f(x), [sum_mu g_mu df(x_mu)/dw per parameter]) with g = g_of_f(f(x))."""
        start = time.perf_counter()
        if self.fused:
            omega, b, beta = onehidden_parameters(self.model, x)
            f = self._forward(x, omega, b, beta, scale=self.model.output_scale)
            grads = list(self._gradient(x, g_of_f(f).contiguous(), omega, b, beta, scale=self.model.output_scale))
        else:
            with torch.enable_grad():
                f_graph = _squeeze(self.model(x))
                f = f_graph.detach()
                grads = torch.autograd.grad(f_graph, self.params, grad_outputs=g_of_f(f), allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        self.seconds += time.perf_counter() - start
        return f, grads


def _squeeze(f: torch.Tensor) -> torch.Tensor:
    return f[:, 0] if f.ndim == 2 and f.shape[1] == 1 else f


class Problem:
    """Data, f0 and the alpha-trick objective of one run: F = alpha (f - f0), L = sum l(F, y) / (N alpha^2)."""

    def __init__(self, evaluator: Evaluator, x, y, x_test, y_test, alpha: float, loss: str):
        self.evaluator, self.alpha, self.loss = evaluator, alpha, loss
        self.x, self.y, self.x_test, self.y_test = x, y, x_test, y_test
        self.f0 = evaluator.outputs(x)
        if loss == "cross_entropy" and (self.f0.ndim != 2 or self.f0.shape[1] < 2):
            raise ValueError(f"loss='cross_entropy' needs model outputs (N, C) with C >= 2, got {tuple(self.f0.shape)}")
        if loss != "cross_entropy" and self.f0.ndim != 1:
            raise ValueError(f"loss={loss!r} needs one output per point, (N,) or (N, 1); the model gives "
                             f"{tuple(self.f0.shape)} (use loss='cross_entropy' for several)")
        check_finite("model(x) at initialisation", self.f0)
        self.f0_test = evaluator.outputs(x_test) if x_test is not None else None

    def objective(self, x, y, f0):
        """(F (N,) or (N, C), L, grads of L by w) on (x, y) with initial outputs f0."""
        alpha, n = self.alpha, x.shape[0]

        def g_of_f(f):  # dL/df = alpha * l'(F) / (N alpha^2)
            return loss_derivative(self.loss, alpha * (f - f0), y) / (n * alpha)

        f, grads = self.evaluator.output_and_gradient(x, g_of_f)
        F = alpha * (f - f0)
        return F, float(loss_terms(self.loss, F, y).sum()) / (n * alpha ** 2), grads

    def train_outputs(self) -> torch.Tensor:
        """F on the training set, without gradients."""
        return self.alpha * (self.evaluator.outputs(self.x) - self.f0)

    def test_outputs(self) -> torch.Tensor | None:
        """F on the test set, or None without one."""
        if self.x_test is None:
            return None
        return self.alpha * (self.evaluator.outputs(self.x_test) - self.f0_test)

    def mean_loss(self, F, y) -> float:
        """L = mean l(F, y) / alpha^2."""
        return float(loss_terms(self.loss, F, y).mean()) / self.alpha ** 2

    def fingerprint(self, dynamics: str) -> str:
        """sha1 of x, y, f0, alpha, loss and dynamics: what a checkpoint must match to be resumed."""
        digest = hashlib.sha1()
        for tensor in (self.x, self.y, self.f0):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(f"{self.alpha!r}|{self.loss}|{dynamics}".encode())
        return digest.hexdigest()
