"""Experiment adversarial (seed 003): FGSM is exactly x + epsilon sign(grad_x J) (against a per-image
torch.autograd reference), PGD stays in the L_inf ball, and on the quick configuration accuracy falls
monotonically in epsilon for every model and PGD is at least as strong as FGSM."""
import numpy as np
import pytest
import torch

from fastdyn.experiments import adversarial, run_experiment
from fastdyn.models import FCNet

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("adversarial")
    return run_experiment("adversarial", out, quick=True, progress=False), out


def tiny(seed=0):
    torch.manual_seed(seed)
    model = FCNet([64, 16, 16, 10]).double()
    return model, torch.randn(12, 64, dtype=torch.float64), torch.randint(0, 10, (12,))


def test_fgsm_is_x_plus_epsilon_sign_of_the_autograd_gradient():
    model, x, y = tiny()
    for epsilon in (0.0, 0.1, 0.37):
        got = adversarial.fgsm(model, x, y, epsilon)
        for i in range(len(y)):  # one image at a time: J_i = cross-entropy of image i alone
            xi = x[i:i + 1].clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(model(xi), y[i:i + 1]).backward()
            assert torch.equal(got[i], x[i] + epsilon * xi.grad[0].sign())


def test_pgd_stays_in_the_ball_and_one_full_step_is_fgsm_clipped():
    model, x, y = tiny(1)
    adv = adversarial.pgd(model, x, y, 0.2, steps=7)
    assert float((adv - x).abs().max()) <= 0.2 + 1e-12
    one = adversarial.pgd(model, x, y, 0.2, steps=1)  # step 2.5 epsilon, clipped back to epsilon: FGSM
    assert torch.allclose(one, adversarial.fgsm(model, x, y, 0.2), atol=1e-12)


def test_accuracy_falls_monotonically_in_epsilon(quick):
    summary, out = quick
    for kind in adversarial.MODELS:
        for attack in ("fgsm", "pgd"):
            assert summary[kind][f"{attack}_monotone_all_seeds"], (kind, attack)
            curve = summary[kind][f"{attack}_accuracy_mean"]
            assert curve[0] > 0.85 and curve[-1] < 0.1
        assert np.all(np.array(summary[kind]["pgd_accuracy_mean"])
                      <= np.array(summary[kind]["fgsm_accuracy_mean"]) + 0.01)
    # adversarial training keeps more accuracy at the training epsilon (0.2) than plain training
    at = summary["epsilons"].index(0.2)
    assert summary["robust"]["pgd_accuracy_mean"][at] > summary["mlp"]["pgd_accuracy_mean"][at] + 0.1
    assert (out / "accuracy.png").exists() and (out / "perturbations.png").exists()


@pytest.mark.parametrize("key, value", [("epsilons", [0.2, 0.1]), ("n_train", 1797), ("pgd_steps", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("adversarial", tmp_path, quick=True, overrides={key: value}, progress=False)
