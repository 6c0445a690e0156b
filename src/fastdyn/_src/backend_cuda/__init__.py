"""The "cuda" backend: thin wrappers over fastdyn's own CUDA kernels (``fastdyn._cuda``).

The wrappers allocate the outputs with torch on the inputs' device and pass the tensors themselves (the bindings
read them through DLPack and check them) with ``stream=current_stream(device)``: kernels run on torch's current
stream there, so results are ordered with the caller's torch work; kernel scratch is stream-ordered on that stream.
The extension is loaded at the first call.
"""
from . import infinite_width, losses, ntk, onehidden  # noqa: F401  (registrations)
