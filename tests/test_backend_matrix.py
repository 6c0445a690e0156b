"""The backend matrix of the suite fails loudly: a backend this machine should have is never skipped away."""
import pytest

import fastdyn
from conftest import AVAILABLE, expected_backends, require_backend


def test_expected_backends_are_available():
    missing = {name: fastdyn.why_unavailable(name) for name in expected_backends() if name not in AVAILABLE}
    assert not missing, f"backends expected here but unavailable: {missing}"


def test_missing_expected_backend_fails(monkeypatch):
    import conftest
    monkeypatch.setattr(conftest, "AVAILABLE", [name for name in AVAILABLE if name != "torch"])
    with pytest.raises(pytest.fail.Exception, match="'torch' unavailable.*expected"):
        require_backend("torch")


def test_missing_unexpected_backend_skips(monkeypatch):
    import conftest
    monkeypatch.setattr(conftest, "AVAILABLE", [name for name in AVAILABLE if name != "cuda"])
    monkeypatch.setattr(conftest, "REQUIRE_CUDA", False)
    with pytest.raises(pytest.skip.Exception, match="'cuda' unavailable"):
        require_backend("cuda")
    monkeypatch.setattr(conftest, "REQUIRE_CUDA", True)
    with pytest.raises(pytest.fail.Exception, match="'cuda' unavailable.*expected"):
        require_backend("cuda")


@pytest.mark.needs_backend("numba")
def test_marker_runs_where_the_backend_is():
    assert "numba" in fastdyn.available_backends()
