"""
Your first NTK
==============

The empirical neural tangent kernel of a network f with parameters θ is
Θ(x, x') = ∇θ f(x) · ∇θ f(x'). :func:`fastdyn.ntk` computes it for any torch model that maps (N, d) inputs to
(N,) or (N, O) outputs, and picks one of three paths from the model:

* ``onehidden-closed-form``: :class:`fastdyn.OneHidden`, summed over neurons in tiles, never an N × h matrix;
  backends cuda, cpu, numba and torch;
* ``structured``: an ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations (such as
  :class:`fastdyn.FCNet`), by structured derivatives;
* ``generic``: any other module, by a chunked ``torch.func`` Jacobian contraction.
"""
import torch
from torch import nn

import fastdyn

torch.manual_seed(0)
x = torch.randn(200, 10, dtype=torch.float64)

# %%
# The one-hidden network of the seeds
# -----------------------------------
# ``OneHidden(d, h)`` is f(x) = (1/h) Σ β_n relu(ω_n·x/√d + b_n) (``scale="mf"``, mean field; ``scale="ntk"``
# gives 1/√h). ``return_info=True`` says which path and backend ran, in which precision, and how long it took.
model = fastdyn.OneHidden(d=10, h=5000, dtype=torch.float64)
K, info = fastdyn.ntk(model, x, return_info=True)
print(K.shape, info)
print("symmetric:", torch.equal(K, K.T), " smallest eigenvalue:", torch.linalg.eigvalsh(K)[0].item())

# %%
# Backends
# --------
# ``backend="auto"`` takes "cuda" for CUDA tensors, else "cpu" (the compiled C++ kernels), else "numba", else
# "torch". An explicit backend is strict: it runs there or raises, saying why. All agree to rounding.
print("available here:", fastdyn.available_backends())
for backend in fastdyn.available_backends():
    if backend != "cuda":
        K_b = fastdyn.ntk(model, x, backend=backend)
        print(f"{backend:6s} max |K - K_auto| = {(K_b - K).abs().max().item():.2e}")

# %%
# Deeper networks and any other module
# ------------------------------------
# An ``FCNet`` (or any ``nn.Sequential`` of ``nn.Linear`` and elementwise activations) takes the structured
# path. A network with several outputs gives (N1, N2, O, O) kernels, or their trace or diagonal with ``out=``.
deep = fastdyn.FCNet([10, 64, 64, 3], dtype=torch.float64)
K3, info = fastdyn.ntk(deep, x[:50], x[:20], out="trace", return_info=True)
print("FCNet:", tuple(K3.shape), info.path)

# %%
# Any other module works too, here a small convolutional network that reshapes its (N, 64) inputs to 8 × 8
# images; ``info.path`` says which path ran ("generic", the ``torch.func`` contraction, is exact but slower).
cnn = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                    nn.Linear(4 * 6 * 6, 1)).double()
images = torch.randn(30, 64, dtype=torch.float64)
K_cnn, info = fastdyn.ntk(cnn, images, return_info=True)
print("CNN:", tuple(K_cnn.shape), info.path, info.backend)

# %%
# Numpy in, numpy out
# -------------------
# Inputs may be numpy arrays or torch tensors, CPU or CUDA, float32 or float64: the kernel comes back in the
# same kind, dtype and device.
K_np = fastdyn.ntk(model, x.numpy())
print(type(K_np).__name__, K_np.dtype)

# %%
# Memory
# ------
# The closed form needs O(N1·N2 + tile·N) memory, never N × h. A request that cannot fit is refused before
# anything is allocated, with a MemoryError that says how much it needs and what to do.
huge = torch.zeros(3_000_000, 10)
try:
    fastdyn.ntk(fastdyn.OneHidden(d=10, h=10), huge)
except MemoryError as error:
    print("MemoryError:", error)
