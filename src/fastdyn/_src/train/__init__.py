"""Training with the alpha-trick: adaptive gradient flow or minibatch SGD, with snapshots and checkpoints.

The network ``f_w`` is trained through the centred, rescaled output (Geiger, Spigler, Jacot, Wyart 2019)

    F(x) = alpha * (f_w(x) - f_w0(x)),        L(w) = 1 / (p * alpha^2) * sum_mu l(F(x_mu), y_mu)

with ``w0`` the initial weights, so F = 0 at t = 0 and, to first order, dF/dt = -(1/p) sum_mu Theta(x, x_mu)
l'(F_mu, y_mu) does not depend on alpha: large alpha -> lazy (kernel) regime, small alpha -> feature learning.
These are the paper's constants (feature_lazy's code divides by alpha instead of alpha^2 and rescales time). For
:class:`fastdyn.models.OneHidden` with ``scale="mf"`` (1/h) the NTK is O(1/h), so the relevant times are O(h).

Losses ``l(F, y)`` (``y`` = +-1 for the first three, class indices for cross-entropy):

* ``"hinge"``: max(0, 1 - F y)   (gradient flow stops once every margin F y >= 1)
* ``"mse"``: (F - y)^2 / 2
* ``"logistic"``: softplus(-F y) = log(1 + exp(-F y))
* ``"cross_entropy"``: -log softmax(F)_y for outputs (N, C)

Dynamics (their settings: :class:`FlowOptions`, :class:`SGDOptions`, also accepted as ``dynamics``):

* ``"flow"``: gradient flow dw/dt = -grad L, by one of two methods (``method``, default "auto"):

  - ``"exact"`` (a ReLU :class:`~fastdyn.models.OneHidden` on the hinge loss; "auto" picks it there): the flow is
    piecewise smooth, and between switches of the activation pattern and of the hinge active set it is solved in
    closed form (a hyperbolic rotation per neuron); a step uses that solution and its error, which comes only from
    the switches it crosses, is estimated by step doubling and held below ``tol`` (margins in units of 1, weights
    relative), the output change below ``max_dout``. Details and the argument that it follows the Filippov flow:
    :mod:`fastdyn._src.train.exact`. On the "cpu" backend it runs in a C++ loop (``loop="native"``), chunks of
    steps with no Python per step; ``loop="python"`` drives the same steps from Python on any backend.
  - ``"euler"`` (every other model and loss): explicit Euler steps with the adaptive step of feature_lazy: a
    step dt is accepted when the output moves little, max_mu |dF_mu| < max_dout, and the gradient turns little,
    |g' - g|^2 / (|g| |g'|) < max_dgrad; dt grows by 1.1 after a step with both below half their bound and is
    divided by 10 (the step retried) otherwise. The gradient of a ReLU network or of the hinge loss jumps when a
    point crosses a kink or the margin, and flow can slide along such a kink. A jump does not scale like dt^2: if
    the retried step's dgrad fell by less than half (the jump is crossed anyway) it is accepted (max_dout still
    bounds it), and after a retry whose dgrad did not fall like dt^2 (20x to 1000x) the step size is restored.
    Below ``waive_below`` (1e-2) times the largest step accepted so far the gradient test is waived, so dt cannot
    shrink without end (Zeno). ``waive_below=0`` with max_dout = 0.1, max_dgrad = 1e-4 is feature_lazy's rule
    (which stalls on ReLU + hinge: results/flow-convergence).
* ``"sgd"``: minibatch SGD (``lr``, ``batch_size``, ``momentum``) on the same loss with the batch mean in place
  of 1/p; time t = step * lr. The stopping rules are checked on the full training set once per epoch and at
  snapshots.

Every run records ``result.engine`` (method, C++ loop or Python steps, kernels), ``result.counts`` (exact:
rejected steps, hinge events) and ``result.converged`` (stopped at its goal, not at a cap).

A fast path for a ReLU :class:`~fastdyn.models.OneHidden` evaluates output and gradient with the fused kernels
(:func:`fastdyn.onehidden.forward` / :func:`fastdyn.onehidden.gradient`), never forming a points x neurons matrix;
every other ``nn.Module`` goes through torch autograd. Both give the same trajectory.

Precision: F = alpha (f - f0) cancels digits of f when alpha is large (lazy regime); use float64 there.
Example (any observable is a function of the model and a :class:`Context`)::

    result = fastdyn.train(model, x, y, alpha=1e-2, x_test=xt, y_test=yt,
                           observables={"kinks": lambda model, c: fastdyn.kinks.positions(model)})
    result.history()["test_err"], result.history()["obs_kinks"]   # (snapshots,), (snapshots, h, d)

Modules: :mod:`.losses` (l, l' and error counts), :mod:`.evaluate` (outputs and gradients, the objective),
:mod:`.exact` (the exact flow method and its C++ loop),
:mod:`.options` (validated settings), :mod:`.schedule` (snapshot times), :mod:`.state` (run state = checkpoint),
:mod:`.steppers` (one per dynamics), :mod:`.records` (what is recorded and returned), :mod:`.run` (``train``).
"""
from .losses import LOSSES
from .options import FlowOptions, SGDOptions
from .records import Context, Snapshot, TrainResult
from .run import train

__all__ = ["LOSSES", "FlowOptions", "SGDOptions", "Context", "Snapshot", "TrainResult", "train"]
