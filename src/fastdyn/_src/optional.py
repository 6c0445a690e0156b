"""Optional dependencies, imported where they are needed so that ``import fastdyn`` needs only numpy, scipy and
torch."""
from __future__ import annotations

import importlib
from types import ModuleType

# import name -> the name pip installs it by
PIP_NAMES = {"sklearn": "scikit-learn", "dask": "dask[distributed]", "distributed": "dask[distributed]"}


def require(module_name: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module_name`` (e.g. "sklearn.svm"), or raise an ImportError that says which extra installs it:
    "fastdyn.kernel_methods needs scikit-learn: pip install 'fastdyn[experiments]'"."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        top = module_name.partition(".")[0]
        raise ImportError(f"{needed_by} needs {PIP_NAMES.get(top, top)}: pip install 'fastdyn[{extra}]'") from error


def progress_bar(items, desc: str, *, enabled: bool = True):
    """``items`` wrapped in a tqdm bar (stderr, cleared when done) when ``enabled`` and tqdm is installed (it comes
    with the experiments extra; the kernel library does not need it), else ``items`` itself."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, leave=False)
