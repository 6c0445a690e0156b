"""Autograd oracles of the one-hidden-layer ReLU network: its parameter gradient and the kink velocities.

Both run torch autograd (or torch.func.jvp) in fp64 on a float64 copy of the model and the upcast inputs, never a
fastdyn kernel.
"""
from __future__ import annotations

import math

import torch

import fastdyn


def autograd_gradient(model, x, g):
    """(grad_omega, grad_b, grad_beta) of sum(g * model(x)) in fp64 by torch autograd, on x's device."""
    ref = fastdyn.OneHidden(model.d, model.h, scale=model.scale, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for name in ("omega", "b", "beta"):
            getattr(ref, name).copy_(getattr(model, name))
    (g.double() * ref(x.double())).sum().backward()
    return ref.omega.grad, ref.b.grad, ref.beta.grad


def autograd_kink_velocity(model, x, g):
    """z_dot (h, d) in fp64: the Jacobian of z(omega, b) = -sqrt(d) b omega / ||omega||^2 (torch.func.jvp) applied
    to the gradient-flow velocities (-grad_omega, -grad_b) of :func:`autograd_gradient`."""
    grad_omega, grad_b, _ = autograd_gradient(model, x, g)
    omega, b = model.omega.detach().double(), model.b.detach().double()

    def z_of(o, c):
        return -math.sqrt(o.shape[1]) * c[:, None] * o / (o * o).sum(1, keepdim=True)

    return torch.func.jvp(z_of, (omega, b), (-grad_omega, -grad_b))[1]
