"""The losses l(F, y) of the alpha-trick, their derivatives dl/dF and the error counts."""
from __future__ import annotations

import torch
from torch import nn

LOSSES = ("hinge", "mse", "logistic", "cross_entropy")


def loss_terms(loss: str, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point loss l(F_mu, y_mu), shape (N,)."""
    if loss == "hinge":
        return torch.relu(1 - F * y)
    if loss == "mse":
        return 0.5 * (F - y) ** 2
    if loss == "logistic":
        return nn.functional.softplus(-F * y)
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(F, y, reduction="none")
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def check_loss(loss) -> None:
    """A ValueError unless ``loss`` is one of LOSSES or a callable fn(output, y) -> per-point losses."""
    if not (callable(loss) or loss in LOSSES):
        raise ValueError(f"loss must be one of {LOSSES} or a callable fn(output, y) -> per-point losses, got {loss!r}")


def point_losses(loss, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point losses (N,) of outputs F ((N,) or (N, C)) at labels y for a loss name of LOSSES (y read as class
    indices for "cross_entropy", as F's dtype otherwise) or a callable fn(F, y) -> (N,)."""
    if callable(loss):
        return loss(F, y)
    return loss_terms(loss, F, y.long() if loss == "cross_entropy" else y.to(F.dtype))


def loss_derivative(loss: str, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dl/dF per point, shape of F (hinge: -y where F y < 1, the subgradient 0 at the kink)."""
    if loss == "hinge":
        return -y * (F * y < 1).to(F.dtype)
    if loss == "mse":
        return F - y
    if loss == "logistic":
        return -y * torch.sigmoid(-F * y)
    if loss == "cross_entropy":
        return torch.softmax(F, dim=1) - nn.functional.one_hot(y, F.shape[1]).to(F.dtype)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def loss_second_derivative(loss: str, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d^2 l / dF^2 per point for one output, shape of F (y = +-1 for hinge and logistic; hinge: 0, off its kink)."""
    if loss == "hinge":
        return torch.zeros_like(F)
    if loss == "mse":
        return torch.ones_like(F)
    if loss == "logistic":
        return torch.sigmoid(F * y) * torch.sigmoid(-F * y)
    raise ValueError(f"loss must be 'hinge', 'mse' or 'logistic' (one output), got {loss!r}")


def errors(F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point classification error (N,) float64: F y <= 0 for one output, argmax F != y for several."""
    if F.ndim == 2:
        return (F.argmax(dim=1) != y).to(torch.float64)
    return (F * y <= 0).to(torch.float64)


def unsatisfied(F: torch.Tensor, y: torch.Tensor) -> int:
    """Points with margin F y < 1 (one output, F (N,)), or misclassified (several outputs, F (N, C))."""
    if F.ndim == 2:
        return int((F.argmax(dim=1) != y).sum())
    return int((F * y < 1).sum())
