"""The first-order Taylor expansion of a network in its parameters, as a trainable module (seed 003, "Kernels")."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, jvp


class Linearized(nn.Module):
    """f_lin(x; theta) = f(x; theta0) + J(x; theta0) (theta - theta0), J = df/dtheta at theta0.

    Its parameters (``params``, a ParameterList in the order of the network's ``named_parameters``) start at
    theta0, so f_lin = f there; training them by gradient descent is training in the kernel regime of the network's
    NTK at theta0 exactly (the kernel never moves). theta0, the network's buffers and its parameters that do not
    require gradients are buffers of this module (they follow ``.to``); the forward pass is one ``torch.func.jvp``
    of the network (in its current train/eval mode), differentiable in theta.
    """

    def __init__(self, model: nn.Module, params0: dict[str, torch.Tensor] | nn.Module | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        if not names:
            raise ValueError("model has no parameters that require gradients")
        current = dict(model.named_parameters())
        if params0 is None:
            start = {name: current[name] for name in names}
        else:
            given = dict(params0.named_parameters()) if isinstance(params0, nn.Module) else dict(params0)
            missing = [name for name in names if name not in given or given[name].shape != current[name].shape]
            if missing:
                raise ValueError(f"params0 must give every parameter of model with its shape; missing or of another "
                                 f"shape: {missing[:5]}")
            start = {name: given[name] for name in names}
        self._names = names
        # fixed tensors: the network's buffers and its parameters that do not require gradients
        fixed = [*model.named_buffers(), *((name, p) for name, p in current.items() if name not in start)]
        self._fixed_names = [name for name, _ in fixed]
        for i, (_, tensor) in enumerate(fixed):
            self.register_buffer(f"fixed_{i}", tensor.detach().clone())
        # the architecture only: every tensor it uses is passed to functional_call, so it is not a submodule (its
        # parameters would otherwise be this module's too)
        object.__setattr__(self, "_network", copy.deepcopy(model).requires_grad_(False))
        for i, name in enumerate(names):
            self.register_buffer(f"theta0_{i}", start[name].detach().clone())
        self.params = nn.ParameterList([nn.Parameter(start[name].detach().clone()) for name in names])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta0 = {name: getattr(self, f"theta0_{i}") for i, name in enumerate(self._names)}
        delta = {name: p - theta0[name] for name, p in zip(self._names, self.params)}
        fixed = {name: getattr(self, f"fixed_{i}") for i, name in enumerate(self._fixed_names)}
        out, change = jvp(lambda params: functional_call(self._network, {**params, **fixed}, (x,)), (theta0,),
                          (delta,))
        return out + change


def linearize(model: nn.Module, params0: dict[str, torch.Tensor] | nn.Module | None = None) -> Linearized:
    """The network linearised in its parameters around ``params0`` (None: its current parameters; a dict of them by
    name, or a network of the same architecture), as a :class:`Linearized` module, trainable like any network
    (e.g. by :func:`fastdyn.train`).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``params0`` lacks a parameter of ``model`` or gives one another shape.
    """
    return Linearized(model, params0)
