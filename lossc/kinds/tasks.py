"""tasks: a composite of k scalar task losses ``L1 … Lk`` (or ``L[i]`` in a series
``for i in 1..K``) with learnable parameters (``learn s[K] = 0.0``); composite form.

The generated module holds the learnables as ``nn.Parameter`` s and its forward
takes the k task losses (``module(l1, l2)`` or ``module([l1, l2])``).
"""

from . import Kind

ORDER = 6  # place in listings
KIND = Kind(
    name="tasks",
    form="composite",
    names={},
    target="none",
    doc="k scalar task losses L1 … Lk (L[i] in a series); learnable parameters declared with 'learn'",
)
