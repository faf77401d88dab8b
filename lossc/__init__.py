"""lossc: a compiler for loss functions.

    import lossc
    focal = lossc.loss("focal", gamma=2.0)   # a torch.nn.Module with a fused backward
    lossc.parse("focal").gradient            # the symbolic gradient

The names below load their modules on first use (``import lossc`` alone imports neither torch nor
sympy, so ``lossc --help`` starts at once).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .check import check, poly  # noqa: E402  (light: the checker loads sympy when it runs; and the
# functions must be bound over the subpackage lossc.check, which its import sets as an attribute)

#: public name -> the submodule that defines it
_EXPORTS = {
    **dict.fromkeys(("loss", "parse", "generate", "source", "catalog", "module"), "api"),
    **dict.fromkeys(("LossError", "LossSyntaxError", "LossNameError", "LossKindError", "LossParamError",
                     "LossInputError"), "errors"),
    "LossSpec": "ir",
    **dict.fromkeys(("linear_loss", "LinearLoss"), "linear"),
}

__all__ = list(_EXPORTS) + ["check", "poly"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'lossc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
