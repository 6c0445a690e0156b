"""
Your first NTK
==============

The empirical neural tangent kernel of a network f with parameters θ is
Θ(x, x') = ∇θ f(x) · ∇θ f(x'). :func:`fastdyn.ntk` computes it for any torch model that maps (N, ...) inputs
to (N,) or (N, O) outputs, treating its points independently, and picks a path from the model:

* ``onehidden-closed-form``: :class:`fastdyn.OneHidden`, summed over neurons in tiles, never an N × h matrix;
  backends cuda, cpu, numba and torch;
* ``structured``: models whose parameters all sit in ``Linear``, ``Conv1d``/``Conv2d``, eval-mode batch norm or
  layer norm layers, with any forward between them (MLPs such as :class:`fastdyn.FCNet`, CNNs, ResNets), by
  per-layer Gram products;
* ``generic``: any other module, by a chunked ``torch.func`` Jacobian contraction;
* ``ntvp``, on request (``implementation="ntvp"``): NTK-vector products, light on memory for many outputs.
"""
import tempfile
from pathlib import Path

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
# Deeper networks, CNNs and any other module
# ------------------------------------------
# An ``FCNet`` takes the structured path. A network with several outputs gives (N1, N2, O, O) kernels, or their
# trace or diagonal with ``out=``.
deep = fastdyn.FCNet([10, 64, 64, 3], dtype=torch.float64)
K3, info = fastdyn.ntk(deep, x[:50], x[:20], out="trace", return_info=True)
print("FCNet:", tuple(K3.shape), info.path)

# %%
# Inputs have the shape the model takes: here 8 × 8 single-channel images for a small CNN (in eval mode, so
# that its points are independent). ``info.path`` says which path ran; ``implementation="jacobian"`` forces the
# generic ``torch.func`` contraction, exact but slower, which agrees.
cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1)).double().eval()
images = torch.randn(30, 1, 8, 8, dtype=torch.float64)
K_cnn, info = fastdyn.ntk(cnn, images, return_info=True)
K_jac = fastdyn.ntk(cnn, images, implementation="jacobian")
print("CNN:", tuple(K_cnn.shape), info.path, info.backend, f"max |K - K_jacobian| = {(K_cnn - K_jac).abs().max():.1e}")

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

# %%
# Such kernels are computed in blocks (``block=``) and written to a ``.npy`` file block by block (``file=``),
# returned as a read-only memmap; an interrupted run resumes from the blocks already written.
with tempfile.TemporaryDirectory() as work:
    K_file = fastdyn.ntk(model, x, block=64, file=Path(work) / "K.npy", progress=False)
    print(type(K_file).__name__, K_file.shape, f"max |K_file - K| = {abs(K_file - K.numpy()).max():.1e}")
