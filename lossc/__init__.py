"""lossc: a compiler for loss functions.

    import lossc
    focal = lossc.loss("focal", gamma=2.0)   # a torch.nn.Module with a fused backward
    lossc.parse("focal").gradient            # the symbolic gradient
"""

__version__ = "0.1.0"

from .api import catalog, generate, loss, module, parse, source  # noqa: E402
from .check import check, poly  # noqa: E402
from .errors import (LossError, LossInputError, LossKindError, LossNameError, LossParamError,  # noqa: E402
                     LossSyntaxError)
from .ir import LossSpec  # noqa: E402

__all__ = ["loss", "parse", "generate", "source", "catalog", "module", "check", "poly", "LossSpec", "LossError",
           "LossSyntaxError", "LossNameError", "LossKindError", "LossParamError", "LossInputError"]
