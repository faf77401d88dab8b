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


def print_quotient(printer, expr) -> str:
    """atoms.quotient(a, b): one division, a / b, in parentheses as a whole (every printer alike)."""
    from sympy.printing.precedence import PRECEDENCE
    a, b = expr.args
    mul = PRECEDENCE["Mul"]
    return f"({printer.parenthesize(a, mul)}/{printer.parenthesize(b, mul, strict=True)})"


def print_computed(printer, expr) -> str:
    """atoms.computed(x): the value itself."""
    return f"({printer._print(expr.args[0])})"


def argmax_of(expr, reductions):
    """The max reduction R (one of ``reductions``) whose argmax indicator expr is: the gradient's weight
    ``Piecewise((1, test), (0, True))`` with a test ``Eq(.., R)`` of R's body, also once sympy has unfolded
    it over a where's branches (``ITE(z[j] < 1/2, Eq(R1, ..), Eq(R1, ..))``); else None. The printers then
    find the argmax on the tensor the max was taken over, not on a rewritten copy of its body."""
    import sympy
    if not (isinstance(expr, sympy.Piecewise) and len(expr.args) == 2 and expr.args[0][0] == 1
            and expr.args[1] == (0, True)):
        return None
    found = {r for n in sympy.preorder_traversal(expr.args[0][1]) if isinstance(n, sympy.Eq)
             for r in n.args if r in reductions}
    return found.pop() if len(found) == 1 else None
