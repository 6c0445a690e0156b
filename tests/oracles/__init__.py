"""Test oracles: plain references written independently of the code they check (never a fastdyn backend).

``ntk``: the empirical NTK by its definition, torch.func Jacobian contraction (``ntk_fp64``: in fp64 from the upcast
inputs, the reference of fp32 paths too). ``onehidden``: autograd gradient and kink velocities of the one-hidden
ReLU network, fp64. ``deep_linear``: autograd RK4 on the full weights of a deep linear network. Elsewhere the tests
use autograd on the ``nn.Module`` itself and numpy.
"""
