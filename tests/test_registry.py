"""The kernel registry and the package's public surface: supported backends follow from what is registered,
dispatch is strict, and each public name is one thing."""
import importlib
import subprocess
import sys

import pytest
import torch

import fastdyn
from fastdyn._src import backends, registry


def test_every_operation_has_a_torch_implementation_and_only_known_backends():
    for name, operation in registry.OPERATIONS.items():
        names = registry.supported(name)
        # the portable fallback; syevr is LAPACK's own, and the flow loop's portable form is the Python-driven
        # ExactFlowStepper (fastdyn/_src/train/exact.py) over the other operations
        assert "torch" in names or name in ("kpca.topk", "flow.onehidden_hinge"), name
        assert set(names) <= set(backends.BACKENDS) and list(names) == [b for b in backends.BACKENDS if b in names]
        assert set(operation.implementations) == set(names)


def test_supported_lists_follow_the_registrations(monkeypatch):
    operation = registry.OPERATIONS["onehidden.forward"]
    monkeypatch.setitem(operation.implementations, "cpu", None)
    monkeypatch.delitem(operation.implementations, "numba")
    assert "numba" not in registry.supported("onehidden.forward")
    with pytest.raises(ValueError, match="does not implement onehidden.forward"):
        registry.dispatch("onehidden.forward", "numba", torch.device("cpu"))


def test_register_refuses_unknown_operations_backends_and_doubles():
    with pytest.raises(KeyError, match="declare it"):
        registry.register("no.such.operation", "torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        registry.register("onehidden.forward", "tpu")
    with pytest.raises(RuntimeError, match="twice"):
        registry.register("onehidden.forward", "torch")(lambda *a, **k: None)


def test_dispatch_narrows_and_names_the_work():
    name, fn = registry.dispatch("ntk.onehidden", "auto", torch.device("cpu"), among=("torch",))
    assert name == "torch" and fn is registry.OPERATIONS["ntk.onehidden"].implementations["torch"]
    with pytest.raises(ValueError, match="the closed form of tanh"):
        registry.dispatch("ntk.onehidden", "cpu", torch.device("cpu"), among=("torch",), what="the closed form of tanh")
    with pytest.raises(ValueError, match="cannot run on cpu"):
        registry.dispatch("onehidden.forward", "cuda", torch.device("cpu"))


def test_unknown_operations_and_backend_names_are_refused():
    with pytest.raises(KeyError, match="unknown operation 'no.such.operation'"):
        registry.supported("no.such.operation")
    with pytest.raises(ValueError, match=r"backend 'torch' does not implement kpca.topk; it runs on \("):
        registry.implementation("kpca.topk", "torch")
    for probe in (fastdyn.why_unavailable, backends.module):
        with pytest.raises(ValueError, match="backend must be one of .* or 'auto', got 'gpu'"):
            probe("gpu")


def test_auto_without_a_usable_backend_says_why(monkeypatch):
    monkeypatch.delenv("FASTDYN_BACKEND", raising=False)
    monkeypatch.setattr(backends, "_probe", lambda name: (None, f"{name} switched off"))
    with pytest.raises(ValueError, match="no backend available for kernel k on cpu arrays; status: .*'torch': "
                                         "'torch switched off'"):
        backends.resolve("auto", torch.device("cpu"), what="kernel k")


def test_auto_picks_the_first_available_registered_backend():
    expected = next(b for b in ("cpu", "numba", "torch")
                    if b in registry.supported("onehidden.gradient") and b in fastdyn.available_backends())
    assert registry.dispatch("onehidden.gradient", "auto", torch.device("cpu"))[0] == expected


def test_public_names_are_not_shadowed_modules():
    """fastdyn.ntk / kpca / train are functions; no module of the same name exists to shadow or be shadowed."""
    for name in ("ntk", "kpca", "train"):
        assert callable(getattr(fastdyn, name)) and not isinstance(getattr(fastdyn, name), type(fastdyn))
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"fastdyn.{name}")
    for name in ("data", "kinks", "models", "observables", "kernel_methods", "onehidden"):
        assert importlib.import_module(f"fastdyn.{name}") is getattr(fastdyn, name)
    assert all(hasattr(fastdyn, name) for name in fastdyn.__all__)


def test_installed_package_is_imported_from_the_repository_root():
    """With the src layout, running from the checkout's root imports the installed, compiled package."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    code = "import fastdyn, json; print(json.dumps([fastdyn.__file__, fastdyn.build_status()['_core']]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    path, core = __import__("json").loads(out)
    assert not path.startswith(str(root / "fastdyn")), path
    assert core == fastdyn.build_status()["_core"]
