"""Plain-torch reference for deep linear network training (autograd on the full weights, no reduction).

The reference of :func:`fastdyn.deep_linear.train`, which integrates the same flow in a reduced form.
"""
from __future__ import annotations

import torch


def train(weights: list, inputs, targets, *, lr: float, epochs: float, dt: float, method: str = "rk4"):
    """Integrate dW_l/dt = -lr dL/dW_l, L = mean over all entries of (Y - X W_1^T ... W_L^T)^2.

    weights: [W_1 (h, n_in), ..., W_L (n_out, h)]; inputs (P, n_in); targets (P, n_out). method "rk4" (classical
    Runge-Kutta) or "gd" (Euler; dt = 1 is gradient descent with learning rate lr). Returns (losses (T,),
    outputs (T, P, n_out), final weights), T = number of steps + 1, in fp64.
    """
    x = torch.as_tensor(inputs, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.float64)
    state = [torch.as_tensor(w, dtype=torch.float64).clone() for w in weights]

    def forward(ws):
        out = x
        for w in ws:
            out = out @ w.T
        return out

    def velocity(ws):
        ws = [w.detach().requires_grad_(True) for w in ws]
        loss = ((y - forward(ws)) ** 2).mean()
        return [-lr * g for g in torch.autograd.grad(loss, ws)]

    def shifted(base, slopes, scale):
        return [w + scale * s for w, s in zip(base, slopes)]

    losses, outputs = [], []
    n_steps = int(round(epochs / dt))
    for step in range(n_steps + 1):
        with torch.no_grad():
            prediction = forward(state)
            losses.append(float(((y - prediction) ** 2).mean()))
            outputs.append(prediction.clone())
        if step == n_steps:
            break
        k1 = velocity(state)
        if method == "gd":
            state = shifted(state, k1, dt)
        else:
            k2 = velocity(shifted(state, k1, dt / 2))
            k3 = velocity(shifted(state, k2, dt / 2))
            k4 = velocity(shifted(state, k3, dt))
            state = [w + dt / 6 * (a + 2 * b + 2 * c + d) for w, a, b, c, d in zip(state, k1, k2, k3, k4)]
    return torch.tensor(losses, dtype=torch.float64), torch.stack(outputs), [w.detach() for w in state]
