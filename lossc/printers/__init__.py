"""Printers: one per backend, built on sympy's, driven by tables."""


def print_piecewise(printer, expr, where: str, last: str | None = None) -> str:
    """A Piecewise as nested ``where(cond, value, rest)`` calls of a backend (torch.where, tl.where);
    ``last``: the default value's text, if not its printed form."""
    import sympy
    *pieces, (default, cond) = expr.args
    if cond != sympy.true:
        raise ValueError("Piecewise without a default")
    text = printer._print(default) if last is None else last
    for value, cond in reversed(pieces):
        text = f"{where}({printer._print(cond)}, {printer._print(value)}, {text})"
    return text
