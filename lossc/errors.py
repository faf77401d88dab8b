"""Errors lossc raises on bad input: values with positions, rendered once by the CLI."""

from __future__ import annotations

import difflib

__all__ = [
    "LossError", "LossSyntaxError", "LossNameError", "LossKindError",
    "LossParamError", "LossInputError", "suggest",
]


class LossError(ValueError):
    """Base class of every error lossc raises because of its input.

    ``filename``, ``line`` and ``column`` (1-based) locate the error in the spec
    text when it has a place there; ``hint`` says what to do about it.
    """

    def __init__(self, message: str, *, source: str | None = None, filename: str | None = None,
                 line: int | None = None, column: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.source = source
        self.filename = filename
        self.line = line
        self.column = column
        self.hint = hint

    def render(self) -> str:
        """``file:line:col: error: message``, the offending line, a caret, and the hint."""
        where = self.filename or "<spec>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        parts = [f"{where}: error: {self.message}"]
        if self.source is not None and self.line is not None:
            lines = self.source.splitlines()
            if 1 <= self.line <= len(lines):
                text = lines[self.line - 1].expandtabs(1)
                parts.append(f"  {text}")
                parts.append("  " + " " * max((self.column or 1) - 1, 0) + "^")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render() if self.line is not None or self.hint else self.message


class LossSyntaxError(LossError):
    """The text is not in the language."""


class LossNameError(LossError):
    """A name that is not defined (unknown function, loss, variable or parameter)."""


class LossKindError(LossError):
    """Something that the loss's kind does not allow."""


class LossParamError(LossError):
    """A parameter value is missing, of the wrong type or violates a ``where`` constraint."""


class LossInputError(LossError):
    """Tensors given to a loss have the wrong shape, dtype or values."""


def suggest(name: str, known) -> str | None:
    """A 'did you mean …?' hint for a misspelt name, or None."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None
