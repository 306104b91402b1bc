"""pntm: Parallelizable Neural Turing Machines.

The public API, importable from the package itself::

    from pntm import PNTMLayer, PNTMConfig   # the layer, for your own model
    from pntm import PNTM, build_model       # the sequence model, any registered model by name
    from pntm import linear_scan             # the scan engine (pntm.ops.scan)

The names load on first use (module ``__getattr__``), so ``import pntm`` does not import torch:
the command line's ``--help`` and its one-line errors stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "PNTM": "pntm.models.pntm",
    "PNTMLayer": "pntm.models.pntm_layer",
    "PNTMConfig": "pntm.models.pntm_config",
    "linear_scan": "pntm.ops.scan",
    "build_model": "pntm.models.base",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'pntm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
