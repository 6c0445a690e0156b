"""fastdyn.train: alpha-trick gradients, adaptive flow accuracy, fast path, stopping rules, checkpoints."""
import copy
import math
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import fastdyn
from fastdyn import data
from fastdyn.models import FCNet, OneHidden
from fastdyn import train
from fastdyn._src.train.losses import LOSSES
from fastdyn._src.train.evaluate import Evaluator as _Evaluator, Problem as _Problem
from fastdyn._src.train.options import Limits
from fastdyn._src.train.schedule import SnapshotSchedule
from fastdyn._src.train.state import CHECKPOINT_VERSION, RunState
from conftest import CPU_BACKENDS, assert_close, require_backend, requires_cuda
from test_losses import direct_loss


pytestmark = pytest.mark.usefixtures("one_thread")


def stripe(p=40, d=3, dtype=torch.float64, p_test=50, seed=0):
    return data.stripe(p, d, p_test=p_test, seed=seed, dtype=dtype, as_torch=True)


@pytest.mark.parametrize("loss, fused", [(loss, False) for loss in LOSSES] +
                         [(loss, True) for loss in LOSSES if loss != "cross_entropy"])  # fused: one output
def test_alpha_trick_gradient_matches_direct_autograd(loss, fused, dtype):
    if fused:
        require_backend("cpu")
    x, y, _, _ = stripe(p=23, d=4, dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    if loss == "cross_entropy":
        model = FCNet([4, 7, 3], act="tanh", dtype=dtype)
        y = (torch.arange(23) % 3).long()
    else:
        model = OneHidden(4, 9, dtype=dtype, generator=gen)
    initial = copy.deepcopy(model)
    with torch.no_grad():  # move away from w0 so that F != 0
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=dtype))
    alpha = 2.5
    problem = _Problem(_Evaluator(initial, fused, "auto"), x, y, None, None, alpha, loss)
    problem.evaluator = _Evaluator(model, fused, "auto")
    F, value, grads = problem.objective(x, y, problem.f0)

    reference = copy.deepcopy(model)
    with torch.no_grad():
        f0 = initial(x)
    F_ref = alpha * (reference(x).squeeze(-1) - f0.squeeze(-1)) if loss != "cross_entropy" else alpha * (reference(x) - f0)
    L_ref = direct_loss(loss, F_ref, y).sum() / (x.shape[0] * alpha ** 2)
    grads_ref = torch.autograd.grad(L_ref, list(reference.parameters()))
    assert_close(F, F_ref.detach(), dtype)
    assert math.isclose(value, float(L_ref.detach()), rel_tol=1e-9 if dtype == torch.float64 else 1e-4)
    for g, g_ref in zip(grads, grads_ref):
        assert_close(g, g_ref, dtype)


@pytest.mark.needs_backend("cpu")
def test_fast_path_gives_the_autograd_trajectory():
    x, y, xt, yt = stripe(p=60, d=4)
    model = OneHidden(4, 33, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    runs = [train(model, x, y, alpha=0.5, x_test=xt, y_test=yt, max_steps=150, fused=f, method="euler")
            for f in (False, True)]
    slow, fast = runs
    assert (slow.fused, fast.fused) == (False, True)
    assert slow.step == fast.step == 150
    assert [s.t for s in slow.snapshots] == pytest.approx([s.t for s in fast.snapshots], rel=1e-12)
    for p, q in zip(slow.model.parameters(), fast.model.parameters()):
        assert_close(q.detach(), p.detach(), torch.float64)
    assert_close(fast.final.test_out, slow.final.test_out, torch.float64)


def test_adaptive_flow_matches_fine_euler():
    """Smooth tiny problem: the adaptive flow and fixed-step Euler (dt = 1e-3) agree at t = 1."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, dtype=torch.float64)
    y = torch.randn(6, dtype=torch.float64)
    model = FCNet([2, 8, 1], act="tanh", dtype=torch.float64)
    coarse = train(model, x, y, alpha=2.0, loss="mse", max_time=1.0, dt=1e-3, max_dgrad=1e-4, max_dout=1e-2)
    result = train(model, x, y, alpha=2.0, loss="mse", max_time=1.0, dt=1e-3, max_dgrad=1e-6, max_dout=1e-2)
    assert result.stop_reason == "time" and result.t == pytest.approx(1.0, abs=1e-12)

    euler = copy.deepcopy(model)
    with torch.no_grad():
        f0 = euler(x)[:, 0].clone()
    dt = 1e-3
    for _ in range(1000):
        F = 2.0 * (euler(x)[:, 0] - f0)
        L = (0.5 * (F - y) ** 2).sum() / (6 * 2.0 ** 2)
        grads = torch.autograd.grad(L, list(euler.parameters()))
        with torch.no_grad():
            for p, g in zip(euler.parameters(), grads):
                p.sub_(dt * g)
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(euler.parameters(), model.parameters()))
    error = max(float((p - q).detach().abs().max()) for p, q in zip(euler.parameters(), result.model.parameters()))
    error_coarse = max(float((p - q).detach().abs().max()) for p, q in zip(euler.parameters(), coarse.model.parameters()))
    assert moved > 1e-2  # the weights did move
    assert error < 5e-4 * moved, (error, moved)  # Euler's own error at dt = 1e-3 is ~1e-4 of the move
    assert error < 0.2 * error_coarse  # a tighter max_dgrad converges to the flow
    assert coarse.step < result.step < 1000  # and the adaptive step did grow


def test_stops_when_every_margin_is_reached():
    x, y, _, _ = data.gaussian_mixture(30, 3, separation=6.0, as_torch=True)
    model = OneHidden(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = train(model, x, y, alpha=1.0, max_steps=5000)
    assert result.stop_reason == "margins", result.message
    assert result.final.unsatisfied == 0 and result.final.train_loss == 0
    assert bool((result.final.train_out * y >= 1).all())
    # One step before the end some margin was still below 1.
    assert result.snapshots[-2].unsatisfied > 0


def test_stops_at_step_time_and_loss_limits():
    x, y, _, _ = stripe()
    model = OneHidden(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert train(model, x, y, max_steps=7).step == 7
    timed = train(model, x, y, max_time=3.3, dt=0.5)
    assert timed.stop_reason == "time" and timed.t == pytest.approx(3.3)
    lossy = train(model, x, y, loss="mse", min_loss=0.4, max_steps=10000)
    assert lossy.stop_reason == "loss" and lossy.final.train_loss <= 0.4 < lossy.snapshots[-2].train_loss
    assert train(model, x, y, max_steps=0).snapshots[0].t == 0


def test_nan_stops_sgd_and_keeps_last_finite_state():
    x, y, _, _ = stripe()
    model = FCNet([3, 16, 1], act="relu", dtype=torch.float64)
    result = train(model, x, y, loss="mse", dynamics="sgd", lr=1e6, max_steps=500)
    assert result.stop_reason == "nonfinite", result.message
    assert "NaN/Inf" in result.message
    assert all(bool(torch.isfinite(p).all()) for p in result.model.parameters())
    assert all(bool(torch.isfinite(s.train_out).all()) for s in result.snapshots)


def test_sgd_with_momentum_learns_cross_entropy():
    x, _, _, _ = stripe(p=60)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = FCNet([3, 32, 3], act="relu", dtype=torch.float64)
    result = train(model, x, y, loss="cross_entropy", dynamics="sgd", lr=0.5, batch_size=16, momentum=0.9,
                   max_steps=300, seed=1)
    assert result.final.train_loss < 0.5 * result.snapshots[0].train_loss
    assert result.t == pytest.approx(300 * 0.5)
    again = train(model, x, y, loss="cross_entropy", dynamics="sgd", lr=0.5, batch_size=16, momentum=0.9,
                  max_steps=300, seed=1)
    assert torch.equal(again.final.train_out, result.final.train_out)  # batches are deterministic by seed


def test_snapshots_are_log_spaced_and_record_observables():
    x, y, xt, yt = stripe()
    model = OneHidden(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    calls = []

    def norm_beta(model, context):
        calls.append(context.step)
        assert context.train_out.shape == (40,) and context.x_test.shape == (50, 3)
        return model.beta.detach().norm()

    result = train(model, x, y, x_test=xt, y_test=yt, max_steps=400, snapshots_per_decade=3,
                   observables={"beta_norm": norm_beta, "pair": lambda m, c: torch.ones(2) * c.t})
    times = [s.t for s in result.snapshots]
    assert times[0] == 0 and times == sorted(times) and len(calls) == len(times)
    bins = [math.floor(3 * math.log10(t / times[1]) + 1e-9) for t in times[1:-1]]
    assert bins == sorted(set(bins))  # at most one snapshot per third of a decade (the last is the end)
    assert len(times) >= 6
    history = result.history()
    assert history["obs_beta_norm"].shape == (len(times),)
    assert history["obs_pair"].shape == (len(times), 2)
    assert history["w_omega"].shape == (len(times), 20, 3)
    assert history["test_out"].shape == (len(times), 50)
    assert float(result.snapshots[-1].observables["beta_norm"]) == pytest.approx(float(result.model.beta.detach().norm()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=-1.0), "alpha"),
    (dict(loss="l1"), "loss"),
    (dict(dynamics="adam"), "dynamics"),
    (dict(batch_size=0, dynamics="sgd"), "batch_size"),
    (dict(fused=True), "fused"),
    (dict(resume=True), "checkpoint"),
])
def test_bad_arguments_are_named(kwargs, match):
    x, y, _, _ = stripe()
    model = FCNet([3, 4, 1], dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        train(model, x, y, **kwargs)


def test_bad_data_is_named():
    model = OneHidden(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="p >= 1"):
        train(model, torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    x, y, _, _ = stripe()
    with pytest.raises(ValueError, match="y must have shape"):
        train(model, x, y[:-1])
    with pytest.raises(TypeError, match="float32"):
        train(model, x.float(), y)
    x_nan = x.clone()
    x_nan[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        train(model, x_nan, y)


RESUME_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_train import resume_problem
    from fastdyn import train
    model, x, y, kwargs = resume_problem()
    train(model, x, y, checkpoint={path!r}, checkpoint_every=40, resume=True,
          callback=lambda state: time.sleep(0.002), **kwargs)
""")


def resume_problem():
    torch.set_num_threads(1)
    x, y, xt, yt = stripe(p=30)
    model = OneHidden(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    return model, x, y, dict(alpha=0.3, x_test=xt, y_test=yt, max_steps=1500, fused=False)


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path):
    path = tmp_path / "run.pt"
    script = RESUME_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path))
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.01)
        assert path.exists(), "no checkpoint written"
        process.kill()
    finally:
        process.wait()
    interrupted = torch.load(path, weights_only=False)
    assert 0 < interrupted["step"] < 1500 and interrupted["stop_reason"] is None

    model, x, y, kwargs = resume_problem()
    resumed = train(model, x, y, checkpoint=path, resume=True, **kwargs)
    straight = train(model, x, y, **kwargs)
    assert resumed.step == straight.step == 1500
    assert [s.step for s in resumed.snapshots] == [s.step for s in straight.snapshots]
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert_close(p.detach(), q.detach(), torch.float64)
    assert_close(resumed.final.test_out, straight.final.test_out, torch.float64)
    assert all(torch.equal(p, q) for p, q in zip(resumed.model.parameters(), straight.model.parameters()))
    # A finished checkpoint is returned as it is; another problem is refused.
    again = train(model, x, y, checkpoint=path, resume=True, **kwargs)
    assert again.step == 1500 and again.stop_reason == "steps"
    with pytest.raises(ValueError, match="different problem"):
        train(model, x, -y, checkpoint=path, resume=True, **kwargs)


def test_resume_sgd_continues_the_batch_stream(tmp_path):
    x, y, _, _ = stripe(p=40)
    model = FCNet([3, 8, 1], dtype=torch.float64)
    kwargs = dict(loss="logistic", dynamics="sgd", lr=0.5, batch_size=8, momentum=0.5, seed=3)
    straight = train(model, x, y, max_steps=60, **kwargs)
    train(model, x, y, max_steps=25, checkpoint=tmp_path / "c.pt", **kwargs)
    resumed = train(model, x, y, max_steps=60, checkpoint=tmp_path / "c.pt", resume=True, **kwargs)
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)  # the same trajectory, bit for bit
    # the interrupted session's end (step 25) added one snapshot; the others are the straight run's
    kept = [s for s in resumed.snapshots if s.step != 25]
    assert [s.t for s in kept] == [s.t for s in straight.snapshots]
    for s, r in zip(kept, straight.snapshots):
        assert torch.equal(s.train_out, r.train_out) and s.train_loss == r.train_loss
    for changed in (dict(lr=0.25), dict(batch_size=9), dict(momentum=0.6), dict(seed=4)):
        with pytest.raises(ValueError, match="different problem"):
            train(model, x, y, max_steps=70, checkpoint=tmp_path / "c.pt", resume=True, **{**kwargs, **changed})


def test_run_state_checkpoint_round_trip(tmp_path):
    """RunState.save / RunState.load keep every field, the weights and the generator's stream."""
    model = FCNet([3, 4, 1], dtype=torch.float64)
    generator = torch.Generator().manual_seed(7)
    torch.randperm(10, generator=generator)
    state = RunState(SnapshotSchedule(None, 4, next=3, first_time=0.5), step=12, t=1.5, dt=0.25, dt_max=0.5,
                     out=torch.arange(5.0), grads=[torch.ones(2)], loss_value=0.125, velocity=[torch.zeros(3)],
                     generator=generator, stop_reason="steps", message="reached max_steps", wall=2.0,
                     timings={"evaluate": 1.0, "observables": 0.5, "checkpoint": 0.25})
    path = tmp_path / "state.pt"
    state.save(path, model=model, fingerprint="abc")
    assert not path.with_name("state.pt.tmp").exists()
    other = FCNet([3, 4, 1], dtype=torch.float64)
    loaded = RunState.load(path, model=other, fingerprint="abc", device=torch.device("cpu"),
                           schedule=SnapshotSchedule(None, 4))
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)
    assert (loaded.step, loaded.t, loaded.dt, loaded.dt_max, loaded.loss_value, loaded.wall) == (12, 1.5, 0.25, 0.5,
                                                                                               0.125, 2.0)
    assert torch.equal(loaded.out, state.out) and torch.equal(loaded.grads[0], state.grads[0])
    assert torch.equal(loaded.velocity[0], state.velocity[0]) and loaded.timings == state.timings
    assert loaded.schedule == SnapshotSchedule(None, 4, next=3, first_time=0.5)
    assert (loaded.stop_reason, loaded.message) == (None, "")  # a limit stop is checked again on resume
    assert torch.equal(torch.randperm(10, generator=loaded.generator), torch.randperm(10, generator=generator))
    with pytest.raises(ValueError, match="different problem"):
        RunState.load(path, model=other, fingerprint="xyz", device=torch.device("cpu"), schedule=SnapshotSchedule())
    torch.save({**torch.load(path, weights_only=False), "version": 1}, path)
    with pytest.raises(ValueError, match=f"version 1, expected {CHECKPOINT_VERSION}"):
        RunState.load(path, model=other, fingerprint="abc", device=torch.device("cpu"), schedule=SnapshotSchedule())


class _BreaksWhenMoved(torch.nn.Module):
    """f(x) = w x_1, NaN as soon as w leaves its initial value 1."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x):
        return x[:, 0] * self.w + torch.where(self.w == 1.0, 0.0, math.nan)


def test_nan_stops_flow_with_message_and_last_good_state():
    x, y, _, _ = stripe()
    result = train(_BreaksWhenMoved(), x, y, loss="mse", min_dt=1e-6, max_steps=100)
    assert result.stop_reason == "nonfinite" and "NaN/Inf" in result.message
    assert result.step == 0 and float(result.model.w.detach()) == 1.0
    assert all(bool(torch.isfinite(s.train_out).all()) for s in result.snapshots)


@requires_cuda
def test_cuda_fused_flow_matches_autograd():
    x, y, _, _ = data.stripe(64, 4, p_test=0, as_torch=True, device="cuda")
    model = OneHidden(4, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).cuda()
    slow = train(model, x, y, max_steps=50, fused=False)
    fast = train(model, x, y, max_steps=50, fused=True)
    assert fast.fused and fast.step == slow.step
    for p, q in zip(slow.model.parameters(), fast.model.parameters()):
        assert_close(q.detach(), p.detach(), torch.float64)


def test_output_shape_must_fit_the_loss():
    x, y, _, _ = stripe()
    with pytest.raises(ValueError, match="one output per point"):
        train(FCNet([3, 4, 2], dtype=torch.float64), x, y)
    with pytest.raises(ValueError, match=r"\(N, C\) with C >= 2"):
        train(FCNet([3, 4, 1], dtype=torch.float64), x, (y > 0).long(), loss="cross_entropy")


def test_snapshot_schedule_at_given_times():
    schedule = SnapshotSchedule([0.5, 1.0, 2.0])
    assert not schedule.peek(0.4) and not schedule.due(0.4)
    assert schedule.peek(1.5) and schedule.next == 0  # peek does not advance
    assert schedule.due(1.5) and schedule.next == 2  # due advances past every time reached
    assert not schedule.due(1.9) and schedule.due(2.0)
    assert not schedule.peek(1e9) and not schedule.due(1e9)  # the times are used up


def test_snapshot_schedule_log_spaced_from_the_first_step():
    schedule = SnapshotSchedule(per_decade=2)
    assert schedule.peek(0.3)  # the grid starts at the first step's time
    assert schedule.due(0.3) and schedule.first_time == 0.3 and schedule.next == 1
    next_time = 0.3 * 10 ** 0.5
    assert not schedule.peek(0.99 * next_time) and not schedule.due(0.99 * next_time)
    assert schedule.peek(next_time) and schedule.next == 1
    assert schedule.due(3.0) and schedule.next == 3  # 0.3 * 10^(1/2) and 0.3 * 10 reached, once
    assert not schedule.due(3.0)


@pytest.mark.parametrize("make, match", [
    (lambda: fastdyn.FlowOptions(dt=0), "dt must be > 0, got 0"),
    (lambda: fastdyn.FlowOptions(max_dout=-1.0), "max_dout must be > 0"),
    (lambda: fastdyn.FlowOptions(max_dgrad=math.nan), "max_dgrad must be > 0"),
    (lambda: fastdyn.FlowOptions(waive_below=1.0), r"waive_below must be in \[0, 1\)"),
    (lambda: fastdyn.SGDOptions(lr=0.0), "lr must be > 0"),
    (lambda: fastdyn.SGDOptions(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: fastdyn.SGDOptions(batch_size=41).batch_for(40), r"batch_size must be in \[1, p=40\], got 41"),
    (lambda: Limits(max_steps=-1), "max_steps must be >= 0"),
    (lambda: SnapshotSchedule([1.0, 1.0]), "snapshot_times must be positive and increasing"),
    (lambda: SnapshotSchedule(per_decade=0), "snapshots_per_decade must be >= 1"),
])
def test_options_are_validated_with_the_train_messages(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kwargs, match", [
    (dict(dt=0), "dt must be > 0"),
    (dict(waive_below=-0.1), "waive_below"),
    (dict(momentum=1.5), "momentum"),
    (dict(max_steps=-1), "max_steps"),
    (dict(snapshot_times=[2.0, 1.0]), "snapshot_times"),
])
def test_flat_keywords_are_validated_by_the_options(kwargs, match):
    x, y, _, _ = stripe()
    with pytest.raises(ValueError, match=match):
        train(FCNet([3, 4, 1], dtype=torch.float64), x, y, **kwargs)


@pytest.mark.parametrize("flat, options", [
    (dict(dynamics="flow", dt=0.5, max_dout=0.05, max_dgrad=1e-2, min_dt=1e-20, waive_below=0.05),
     fastdyn.FlowOptions(dt=0.5, max_dout=0.05, max_dgrad=1e-2, min_dt=1e-20, waive_below=0.05)),
    (dict(dynamics="sgd", lr=0.3, batch_size=8, momentum=0.5, seed=4),
     fastdyn.SGDOptions(lr=0.3, batch_size=8, momentum=0.5, seed=4)),
])
def test_options_objects_give_the_flat_keyword_run(flat, options):
    x, y, xt, yt = stripe()
    model = OneHidden(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    runs = [train(model, x, y, x_test=xt, y_test=yt, max_steps=120, **kwargs)
            for kwargs in (flat, dict(dynamics=options))]
    assert (runs[0].step, runs[0].t, runs[0].dt, runs[0].stop_reason) == (runs[1].step, runs[1].t, runs[1].dt,
                                                                           runs[1].stop_reason)
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
    for s, r in zip(runs[0].snapshots, runs[1].snapshots, strict=True):
        assert s.t == r.t and torch.equal(s.train_out, r.train_out) and torch.equal(s.test_out, r.test_out)


def test_options_object_and_flat_dynamics_keywords_do_not_mix():
    x, y, _, _ = stripe()
    model = FCNet([3, 4, 1], dtype=torch.float64)
    with pytest.raises(TypeError, match="dt, lr"):
        train(model, x, y, dynamics=fastdyn.FlowOptions(), dt=0.5, lr=0.2)
    with pytest.raises(TypeError, match="batch_size"):
        train(model, x, y, dynamics=fastdyn.SGDOptions(), batch_size=4)
    with pytest.raises(ValueError, match="dynamics must be one of"):
        train(model, x, y, dynamics=None)


def _outputs(model, x):
    f = model(x)
    return f[:, 0] if f.ndim == 2 and f.shape[1] == 1 else f


def torch_sgd_weights(model, x, y, *, alpha, loss, lr, momentum, batch_size, seed, steps):
    """The weights after each of ``steps`` torch.optim.SGD steps on the alpha-trick batch loss
    L = mean_batch l(alpha (f - f0), y) / alpha^2, batches drawn as fastdyn documents: ``torch.randperm(p)[:batch]``
    from a generator seeded by ``seed``, every step (none when the batch is the whole set)."""
    reference = copy.deepcopy(model)
    with torch.no_grad():
        f0 = _outputs(reference, x)
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum)
    generator, p = torch.Generator().manual_seed(seed), x.shape[0]
    weights = []
    for _ in range(steps):
        batch = torch.randperm(p, generator=generator)[:batch_size] if batch_size < p else torch.arange(p)
        F = alpha * (_outputs(reference, x[batch]) - f0[batch])
        optimizer.zero_grad()
        (direct_loss(loss, F, y[batch]).mean() / alpha ** 2).backward()
        optimizer.step()
        weights.append({k: v.detach().clone() for k, v in reference.state_dict().items()})
    return weights


@pytest.mark.parametrize("net, loss, momentum, batch_size", [
    ("onehidden", "hinge", 0.9, 7),
    ("onehidden", "hinge", 0.0, None),
    ("fcnet", "cross_entropy", 0.5, 5),
    ("fcnet", "logistic", 0.9, 23),
])
def test_sgd_follows_torch_optim_sgd_step_by_step(net, loss, momentum, batch_size):
    """Every one of 20 steps (fused OneHidden kernels or autograd) against torch.optim.SGD on the loss written out,
    to 1e-12; a snapshot at each t = step * lr holds that step's weights and outputs."""
    x, y, _, _ = stripe(p=23, d=5)
    if net == "onehidden":
        require_backend("cpu")
        model = OneHidden(5, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    else:
        torch.manual_seed(4)
        model = FCNet([5, 6, 3 if loss == "cross_entropy" else 1], act="tanh", dtype=torch.float64)
    if loss == "cross_entropy":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    steps, lr, alpha, seed = 20, 0.7, 0.5, 11
    times = [k * lr for k in range(1, steps + 1)]
    result = train(model, x, y, alpha=alpha, loss=loss, dynamics="sgd", lr=lr, momentum=momentum,
                   batch_size=batch_size, seed=seed, max_steps=steps, snapshot_times=times,
                   backend="cpu" if net == "onehidden" else "auto")
    assert result.fused == (net == "onehidden") and result.stop_reason == "steps"
    assert [s.step for s in result.snapshots] == list(range(steps + 1))
    assert [s.t for s in result.snapshots] == [0.0] + times
    expected = torch_sgd_weights(model, x, y, alpha=alpha, loss=loss, lr=lr, momentum=momentum,
                                 batch_size=batch_size or x.shape[0], seed=seed, steps=steps)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        f0 = _outputs(model, x)
    for snapshot, weights in zip(result.snapshots[1:], expected, strict=True):
        for name, value in weights.items():
            assert_close(snapshot.weights[name], value, rtol=1e-12)
        reference.load_state_dict(weights)
        with torch.no_grad():
            assert_close(snapshot.train_out, alpha * (_outputs(reference, x) - f0), rtol=1e-12)
    moved = max(float((expected[-1][k] - v).abs().max()) for k, v in model.state_dict().items())
    assert moved > 0.1  # the runs went somewhere


def _onehidden_f(w, x, scale):
    """f(x) = scale * sum_n beta_n relu(omega_n . x / sqrt(d) + b_n) on weights w = (omega, b, beta)."""
    return scale * torch.relu(x @ w[0].T / math.sqrt(x.shape[1]) + w[1]) @ w[2]


def _hinge_flow_rate(w, x, y, f0, alpha, scale):
    """-grad L of the alpha-trick hinge loss by autograd."""
    w = [a.detach().requires_grad_(True) for a in w]
    loss = direct_loss("hinge", alpha * (_onehidden_f(w, x, scale) - f0), y).sum() / (x.shape[0] * alpha ** 2)
    return [-g for g in torch.autograd.grad(loss, w)]


def _downcast(model, x, y, dtype):
    """The problem in ``dtype`` and the fp64 upcast of exactly those values (the oracle's inputs)."""
    low = copy.deepcopy(model).to(dtype)
    x, y = x.to(dtype), y.to(dtype)
    weights = [p.detach().double() for p in (low.omega, low.b, low.beta)]
    return low, x, y, weights, x.double(), y.double()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fused_euler_flow_in_each_dtype_and_backend_follows_an_fp64_autograd_reference(backend, dtype):
    """Euler with every step accepted (bounds out of reach: dt grows by 1.1 a step) on the fused kernels of each
    backend, against fp64 autograd Euler with the same steps from the same (upcast) inputs."""
    x, y, _, _ = stripe(p=17, d=4)
    model = OneHidden(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    model, x, y, w, x64, y64 = _downcast(model, x, y, dtype)
    alpha, dt0, steps = 0.5, 0.05, 30
    result = train(model, x, y, alpha=alpha, method="euler", dt=dt0, max_dout=1e9, max_dgrad=1e9, max_steps=steps,
                   backend=backend)
    assert result.fused and f"euler method, Python steps (fused {backend}" in result.engine
    assert result.step == steps and result.dt == pytest.approx(dt0 * 1.1 ** steps, rel=1e-12)
    assert result.t == pytest.approx(sum(dt0 * 1.1 ** k for k in range(steps)), rel=1e-12)

    f0, dt = _onehidden_f(w, x64, model.output_scale), dt0
    for _ in range(steps):
        w = [a + dt * r for a, r in zip(w, _hinge_flow_rate(w, x64, y64, f0, alpha, model.output_scale))]
        dt *= 1.1
    for got, expected in zip((result.model.omega, result.model.b, result.model.beta), w):
        assert_close(got, expected, dtype, rows=got.ndim == 2)
    assert_close(result.final.train_out, alpha * (_onehidden_f(w, x64, model.output_scale) - f0), dtype)
    assert float((w[2] - model.beta.detach().double()).abs().max()) > 0.5  # the weights did move


def switch_free_problem():
    """A hinge flow that crosses no kink and no margin over [0, T] (checked along an fp64 RK4 of the autograd
    flow, 100 steps, 1e-14 from 800): there the exact method is exact. Returns (model, x, y, alpha, T)."""
    x, y, _, _ = stripe(p=13, d=3, p_test=1, seed=8)
    model = OneHidden(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    return model, x, y, 0.5, 0.5


def rk4_hinge_flow(w, x, y, alpha, scale, t_end, steps=100):
    """RK4 of dw/dt = -grad L; asserts that the activation pattern and the hinge active set never change."""
    f0 = _onehidden_f(w, x, scale)
    pattern = x @ w[0].T / math.sqrt(x.shape[1]) + w[1] > 0
    dt = t_end / steps

    def rate(w):
        return _hinge_flow_rate(w, x, y, f0, alpha, scale)

    for _ in range(steps):
        k1 = rate(w)
        k2 = rate([a + dt / 2 * k for a, k in zip(w, k1)])
        k3 = rate([a + dt / 2 * k for a, k in zip(w, k2)])
        k4 = rate([a + dt * k for a, k in zip(w, k3)])
        w = [a + dt / 6 * (r1 + 2 * r2 + 2 * r3 + r4) for a, r1, r2, r3, r4 in zip(w, k1, k2, k3, k4)]
        F = alpha * (_onehidden_f(w, x, scale) - f0)
        assert torch.equal(x @ w[0].T / math.sqrt(x.shape[1]) + w[1] > 0, pattern) and bool((F * y < 1).all())
    return w, F


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fused_exact_flow_in_each_dtype_and_backend_follows_an_fp64_rk4_reference(backend, dtype):
    """The exact method (the C++ loop on "cpu", Python steps elsewhere) where no switch happens, against an fp64
    RK4 integration of the autograd flow from the same (upcast) inputs."""
    model, x, y, alpha, t_end = switch_free_problem()
    model, x, y, w, x64, y64 = _downcast(model, x, y, dtype)
    result = train(model, x, y, alpha=alpha, max_time=t_end, dt=0.01, backend=backend)
    loop = "C++ loop (cpu, " if backend == "cpu" else f"Python steps (fused {backend}"
    assert f"exact method, {loop}" in result.engine
    assert result.stop_reason == "time" and result.t == pytest.approx(t_end, rel=1e-12) and result.step > 3
    assert result.counts["hinge_events"] == 0
    w_end, F_end = rk4_hinge_flow(w, x64, y64, alpha, model.output_scale, t_end)
    for got, expected in zip((result.model.omega, result.model.b, result.model.beta), w_end):
        assert_close(got, expected, dtype, rows=got.ndim == 2)
    assert_close(result.final.train_out, F_end, dtype)
    assert max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(w_end, w)) > 0.05  # they did move


@pytest.mark.needs_backend("cpu")
@pytest.mark.parametrize("method", ["exact", "euler"])
def test_flow_snapshot_times_are_the_first_steps_reaching_them(method):
    """snapshot_times (flow): besides t = 0 and the end, one snapshot at the first step at or past each time (steps
    are not shortened to land on them; SGD's t = step * lr meets multiples of lr exactly, see
    test_sgd_follows_torch_optim_sgd_step_by_step), holding the state of a run stopped there by max_steps."""
    x, y, xt, yt = stripe(p=21)
    model = OneHidden(3, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    times, t_end = [0.5, 1.5, 4.0, 9.0], 12.0
    kwargs = dict(alpha=0.5, x_test=xt, y_test=yt, method=method, backend="cpu")
    result = train(model, x, y, snapshot_times=times, max_time=t_end, **kwargs)
    assert result.stop_reason == "time" and len(result.snapshots) == len(times) + 2
    assert result.snapshots[0].t == 0 and result.snapshots[-1].t == pytest.approx(t_end, rel=1e-12)
    for requested, snapshot in zip(times, result.snapshots[1:-1], strict=True):
        stopped = train(model, x, y, max_steps=snapshot.step, **kwargs)
        before = train(model, x, y, max_steps=snapshot.step - 1, **kwargs)
        assert before.t < requested <= snapshot.t == stopped.t
        for name, value in stopped.model.state_dict().items():
            assert_close(snapshot.weights[name], value, rtol=1e-12)
        assert_close(snapshot.train_out, stopped.final.train_out, rtol=1e-12)
        assert_close(snapshot.test_out, stopped.final.test_out, rtol=1e-12)


class _CountsForwards(torch.nn.Module):
    """``net`` with a count of its forward calls, shared by the copies train() makes."""

    forwards = 0

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        _CountsForwards.forwards += 1
        return self.net(x)


@pytest.mark.parametrize("dynamics", ["sgd", "flow"])
def test_resuming_a_run_stopped_by_nan_returns_it_unchanged(tmp_path, dynamics):
    """A checkpoint stopped by NaN/Inf is final: resumed, even with a higher step limit, it redoes no step (one
    forward pass: the initial outputs that identify the problem) and returns the stopped run (last finite weights,
    snapshots, message), which is the run without a checkpoint."""
    x, y, _, _ = stripe()
    if dynamics == "sgd":
        torch.manual_seed(0)
        net, kwargs = FCNet([3, 16, 1], act="relu", dtype=torch.float64), dict(dynamics="sgd", lr=1e6)
    else:
        net, kwargs = _BreaksWhenMoved(), dict(min_dt=1e-6)
    model, path = _CountsForwards(net), tmp_path / "nan.pt"
    stopped = train(model, x, y, loss="mse", max_steps=500, checkpoint=path, **kwargs)
    straight = train(model, x, y, loss="mse", max_steps=500, **kwargs)
    _CountsForwards.forwards = 0
    resumed = train(model, x, y, loss="mse", max_steps=5000, checkpoint=path, resume=True, **kwargs)
    assert _CountsForwards.forwards == 1
    assert resumed.stop_reason == stopped.stop_reason == straight.stop_reason == "nonfinite"
    assert (resumed.step, resumed.t, resumed.message) == (stopped.step, stopped.t, stopped.message) == \
        (straight.step, straight.t, straight.message)
    assert (resumed.step > 0) == (dynamics == "sgd")
    assert [s.step for s in resumed.snapshots] == [s.step for s in stopped.snapshots]
    for run in (resumed, stopped):
        assert all(torch.equal(p, q) for p, q in zip(run.model.parameters(), straight.model.parameters()))
    assert all(bool(torch.isfinite(p).all()) for p in resumed.model.parameters())


def _onehidden(x):
    return OneHidden(x.shape[1], 5, dtype=x.dtype, generator=torch.Generator().manual_seed(0))


class _Frozen(torch.nn.Module):
    def forward(self, x):
        return x[:, 0]


def _nan_at_start():
    net = FCNet([3, 1], dtype=torch.float64)
    torch.nn.init.constant_(net[0].bias, math.nan)
    return net


@pytest.mark.parametrize("case, error, match", [
    (lambda x, y: dict(model="a network"), TypeError, "model must be a torch.nn.Module, got str"),
    (lambda x, y: dict(model=_Frozen()), ValueError, "model has no trainable parameters"),
    (lambda x, y: dict(model=_nan_at_start()), ValueError, r"model\(x\) at initialisation contains NaN"),
    (lambda x, y: dict(alpha=math.inf), ValueError, "alpha must be a positive finite number"),
    (lambda x, y: dict(alpha=math.nan), ValueError, "alpha must be a positive finite number"),
    (lambda x, y: dict(x=x.tolist()), TypeError, "x must be a numpy array or a torch tensor"),
    (lambda x, y: dict(x=x.long()), TypeError, "x must have dtype float32 or float64"),
    (lambda x, y: dict(x=x[:, 0]), ValueError, r"x must have shape \(p, d\)"),
    (lambda x, y: dict(y=y.tolist()), TypeError, "y must be a numpy array or a torch tensor, got list"),
    (lambda x, y: dict(y=y / 0), ValueError, "y contains NaN or Inf"),
    (lambda x, y: dict(loss="cross_entropy", model=FCNet([3, 4, 2], dtype=torch.float64)), TypeError,
     "y must hold integer class indices for loss='cross_entropy'"),
    (lambda x, y: dict(x_test=x), ValueError, "give both x_test and y_test, or neither"),
    (lambda x, y: dict(y_test=y), ValueError, "give both x_test and y_test, or neither"),
    (lambda x, y: dict(x_test=x[:, :2], y_test=y), ValueError, r"x_test must be \(N, 3\)"),
    (lambda x, y: dict(x_test=x.float(), y_test=y), ValueError, r"x_test must be \(N, 3\) torch.float64"),
    (lambda x, y: dict(x_test=x * math.nan, y_test=y), ValueError, "x_test contains NaN or Inf"),
    (lambda x, y: dict(x_test=x, y_test=y[:-1]), ValueError, r"y_test must have shape \(40,\)"),
    (lambda x, y: dict(observables={"beta": "beta"}), TypeError, r"observables\['beta'\] must be callable"),
    (lambda x, y: dict(method="exact", fused=False), ValueError, "method='exact' needs a ReLU"),
    (lambda x, y: dict(loop="fast"), ValueError, "loop must be one of"),
    (lambda x, y: dict(min_dt=0.0), ValueError, "min_dt must be > 0"),
    (lambda x, y: dict(dynamics="sgd", lr=-0.1), ValueError, "lr must be > 0"),
    (lambda x, y: dict(dynamics="sgd", batch_size=41), ValueError, r"batch_size must be in \[1, p=40\], got 41"),
    (lambda x, y: dict(snapshot_times=[0.0, 1.0]), ValueError, "snapshot_times must be positive and increasing"),
    (lambda x, y: dict(snapshot_times=[1.0, math.nan]), ValueError, "snapshot_times must be positive and increasing"),
    (lambda x, y: dict(snapshots_per_decade=0), ValueError, "snapshots_per_decade must be >= 1"),
    (lambda x, y: dict(backend="gpu"), ValueError, "backend must be one of"),
    (lambda x, y: dict(backend="gpu", model=FCNet([3, 4, 1], dtype=torch.float64)), ValueError,
     "backend must be one of"),
    (lambda x, y: dict(backend="cuda"), ValueError, "backend 'cuda' cannot run on cpu arrays"),
    (lambda x, y: dict(fused="yes"), ValueError, "fused must be True, False or 'auto'"),
])
def test_train_errors_name_the_argument(case, error, match):
    x, y, _, _ = stripe()
    kwargs = dict(model=_onehidden(x), x=x, y=y, max_steps=1)
    kwargs.update(case(x, y))
    with pytest.raises(error, match=match):
        train(**kwargs)


def test_sgd_stopped_by_an_overflowing_loss_keeps_its_snapshots_in_order():
    """Outputs still finite but a loss that overflows (mse of F ~ 1e190): the step is undone like a NaN, and no
    snapshot of it is left behind (the snapshots stay in step order and end at the weights the model holds)."""
    x, y, _, _ = stripe()
    torch.manual_seed(4)
    model = FCNet([3, 16, 1], act="relu", dtype=torch.float64)
    result = train(model, x, y, loss="mse", dynamics="sgd", lr=1e3, batch_size=8, momentum=0.9, seed=4,
                   max_steps=300)
    assert result.stop_reason == "nonfinite" and result.step > 0
    steps = [s.step for s in result.snapshots]
    assert steps == sorted(set(steps)) and steps[-1] == result.step
    assert all(math.isfinite(s.train_loss) for s in result.snapshots)
    for name, value in result.model.state_dict().items():
        assert torch.equal(result.final.weights[name], value)
