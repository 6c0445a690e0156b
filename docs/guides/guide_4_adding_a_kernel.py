"""
Adding a kernel
===============

A kernel of fastdyn is one *operation* of the registry, ``fastdyn/_src/registry.py``, declared once with the
signature every backend implements, and one implementation per backend, registered where it is written (the
spirit of PyTorch ATen's ``DispatchStub``). ``backend="auto"``, the strict ``backend=`` errors and ``fastdyn info``
all follow from the registrations. This guide looks at the registry as it is, then walks through the recipe on
the operation ``loss.hinge_gradient`` (the output derivative of the α-trick hinge loss).
"""
import inspect

import torch

import fastdyn

from fastdyn._src import registry

# %%
# The operations and their backends
# ---------------------------------
# :func:`registry.supported` lists the backends that implement an operation, in preference order (cuda, cpu,
# numba, torch); backends that cannot load here (no GPU, no compiler) are skipped by ``backend="auto"``.
for name in registry.OPERATIONS:
    print(f"{name:24s} {', '.join(registry.supported(name))}")
print()
print(registry.OPERATIONS["loss.hinge_gradient"].signature)

# %%
# The recipe
# ----------
# 1. **Declare** the operation and its one signature in ``registry.py``::
#
#        _declare("loss.hinge_gradient", "(f (p,), f0 (p,), y (p,), *, alpha) -> (g (p,), loss, unsatisfied)")
#
#    Implementations get contiguous tensors of one dtype and device (the public function validates them) and
#    the array options as keywords.
# 2. **Write the kernel** in ``csrc/cpu/losses.cpp`` (and ``csrc/cuda/losses.cu``) as a template over T, bound
#    once for float32 and float64. The Python signature of a kernel bound on both devices is written once, in
#    ``csrc/signatures.hpp``; each device file binds it in one line inside ``FASTDYN_BINDINGS(losses) { ... }``.
#    Buffers arrive as ``fastdyn::Buffer`` (anything with ``__dlpack__``) and are checked in one place
#    (``Call call(...); call.check("f", f, {"p"});``: dims named once, dtype, device, layout; errors name the
#    argument); ``call.dispatch`` picks float or double and releases the GIL; the caller allocates the outputs,
#    the kernel owns its scratch.
# 3. **Register** one function per backend where it is written: the plain-torch reference in
#    ``fastdyn/_src/backend_torch/losses.py`` (its source is printed below), the same in ``backend_cpu/``
#    (allocate the outputs, one keyword call into ``fastdyn._core``), ``backend_cuda/`` and optionally
#    ``backend_numba/``; add the module to the package's ``__init__``.
# 4. **Test** it against an oracle that is not one of the backends, on every available backend, in fp64 to 1e-9
#    and fp32 to 1e-4 (``tests/test_losses.py``), and time it in ``bench/`` if its speed is the point.
print(inspect.getsource(registry.implementation("loss.hinge_gradient", "torch")))

# %%
# Step 4 in miniature
# -------------------
# The oracle: autograd on the loss written out, L = Σ relu(1 − α (f − f₀) y) / (p α²).
p, alpha = 37, 2.0  # odd sizes catch tiling bugs
generator = torch.Generator().manual_seed(0)
f, f0 = (torch.randn(p, dtype=torch.float64, generator=generator) for _ in range(2))
y = torch.where(torch.rand(p, generator=generator, dtype=torch.float64) > 0.5, 1.0, -1.0).double()
leaf = f.clone().requires_grad_()
oracle = torch.relu(1 - alpha * (leaf - f0) * y).sum() / (p * alpha**2)
oracle.backward()

for backend in registry.supported("loss.hinge_gradient"):
    if backend not in fastdyn.available_backends():  # cuda without a GPU, numba without numba
        continue
    g, loss, unsatisfied = registry.implementation("loss.hinge_gradient", backend)(f, f0, y, alpha=alpha)
    print(f"{backend:6s} |g - autograd| = {(g - leaf.grad).abs().max().item():.1e}, "
          f"|L - L_autograd| = {abs(loss - oracle.item()):.1e}, unsatisfied margins {unsatisfied}")

# %%
# The full text of the recipe, with what the test suite holds every kernel to (one tolerance rule, every backend
# for each test, which missing backends may skip), is the README's "Contributing: adding a kernel" in the
# :doc:`overview <../overview>`.
