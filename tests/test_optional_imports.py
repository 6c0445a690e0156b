"""The core needs only numpy, scipy and torch; optional packages load where they are used and say which extra
installs them; one thread setting for every experiment."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastdyn._src.optional import require
from fastdyn._src.threads import limit_threads

OPTIONAL = ("matplotlib", "sklearn", "pandas", "dask", "distributed", "numba", "tqdm", "cvxpy")


def test_import_fastdyn_loads_no_optional_package():
    """Beyond what ``import torch`` loads itself (torch.hub imports tqdm when it is installed)."""
    code = ("import sys, numpy, scipy, torch; before = set(sys.modules); import fastdyn; "
            f"bad = [m for m in {OPTIONAL!r} if m in sys.modules and m not in before]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_imports_with_the_optional_packages_missing():
    """sys.modules[name] = None makes ``import name`` raise ImportError, as if it were not installed."""
    code = ("import sys\n"
            f"for name in {OPTIONAL!r}: sys.modules[name] = None\n"
            "import fastdyn, fastdyn.deep_linear, fastdyn.plotting, fastdyn.experiments\n"
            "from fastdyn import kinks, kpca, ntk, observables, onehidden, train\n"
            "try:\n"
            "    fastdyn.plotting.new_figure()\n"
            "except ImportError as error:\n"
            "    assert str(error) == \"fastdyn.plotting needs matplotlib: pip install 'fastdyn[experiments]'\"\n"
            "else:\n"
            "    raise AssertionError('drew without matplotlib')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_optional_package_names_the_extra(monkeypatch):
    from fastdyn import kernel_methods

    monkeypatch.setitem(sys.modules, "sklearn.svm", None)
    K = np.eye(2)
    message = r"fastdyn.kernel_methods needs scikit-learn: pip install 'fastdyn\[experiments\]'"
    with pytest.raises(ImportError, match=message):
        kernel_methods.svc_error(K, np.array([1.0, -1.0]), K, np.array([1.0, -1.0]))
    with pytest.raises(ImportError, match=r"fastdyn.sweep needs dask\[distributed\]: pip install 'fastdyn\[sweep\]'"):
        require("distributed.no_such_module", "sweep", "fastdyn.sweep")


def test_limit_threads_sets_and_restores():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with limit_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with limit_threads(0):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), limit_threads(1):
            raise RuntimeError
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="config 'threads' must be >= 0"), limit_threads(-1):
            pass
    finally:
        torch.set_num_threads(before)
