"""Test oracles: plain references written independently of the code they check (never a fastdyn backend).

``ntk``: the empirical NTK by its definition, torch.func Jacobian contraction. ``deep_linear``: autograd RK4 on
the full weights of a deep linear network. Elsewhere the tests use autograd on the ``nn.Module`` itself and numpy.
"""
