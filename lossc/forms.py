"""The normal forms: one object each, owning what the stages ask of a form (docs/design.md, "The three
normal forms"). A kind names its form (``Kind.form``, a string that serialises); ``FORMS[name]`` (or
``LossSpec.normal_form``) is the object."""

from __future__ import annotations

from dataclasses import dataclass

from .ir import ROW_FORM_SYMBOLS


@dataclass(frozen=True)
class Form:
    """What a normal form is to the front end, the printers, the module, the runtime and the tools."""

    name: str
    #: a generated function's inputs (the torch engine's modules), and the input its buffers are shaped like
    inputs: str = ""
    like: str | None = None
    #: the input is rows [N, C, d1, ...] of classes: class reductions, per-class weights, class groups
    rows: bool = False
    #: symbols of the form a parameter may not make (p_t, C, p[j], ... of the row form)
    own_symbols: tuple = ()
    #: the body is a function of sums over the batch (s[i], y[i] inside ``sum(... for i)``)
    batch_sums: bool = False
    #: the body combines task losses L1 … Lk with learnable parameters (the composite form)
    task_losses: bool = False
    #: triton kernels (``{name}_kernel_program`` of lossc/printers/triton.py, templates/triton_{name}.py.j2);
    #: without them the form runs under autograd alone
    triton: bool = False
    #: the class labels the module ignores unless told (nn.CrossEntropyLoss's -100)
    ignore_default: int | None = None
    #: the keyword options a module of the form takes (beyond its parameters)
    options: tuple[str, ...] = ()
    #: losses per element (reduction="none" gives one per row or element) or one value per batch
    per_element: bool = False
    #: what the gradient ``lossc grad`` prints is taken with respect to (None: the kind's input name)
    gradient_of: str | None = None
    #: ``lossc bench``'s default input shape on each device, and what --shape spells. 4096 x 32000 (500 MB in
    #: float32) is benchmarks/cpu_bench.py's LLM-like shape: on a GPU it takes milliseconds, on a laptop CPU
    #: each eager step takes a second and torch.compile a minute, so the row form's CPU default is 1024 x 8192
    bench_shapes: tuple[tuple[str, tuple], ...] = ()
    shape_text: str = "N"

    def fits(self, shape: tuple) -> bool:
        """Whether ``lossc bench --shape`` gives this form's input shape."""
        return len(shape) >= 2 if self.rows else len(shape) == 1


_OPTIONS = ("weight", "ignore_index", "reduction", "backend", "validate")

ROW = Form("row", inputs="z, t, P", like="z", rows=True, own_symbols=ROW_FORM_SYMBOLS,
           triton=True, ignore_default=-100,
           options=_OPTIONS + ("class_group", "inplace_grad"), per_element=True,
           gradient_of="dL/dz_c (c = class; [j=y] is 1 at the target)",
           bench_shapes=(("cuda", (4096, 32000)), ("cpu", (1024, 8192))), shape_text="N,C[,d1,...]")
# (an elementwise module is the row form's template: it takes class_group, and the API refuses a group)
ELEMENTWISE = Form("elementwise", inputs="u, t, P", like="u", triton=True,
                   options=_OPTIONS + ("class_group", "inplace_grad"), per_element=True,
                   bench_shapes=(("cuda", (1 << 24,)), ("cpu", (1 << 20,))))
BATCH = Form("batch", batch_sums=True, triton=True,
             options=_OPTIONS + ("from_logits", "batch_group"),
             gradient_of="dL/ds_i (s, y: one element's values; B1, B2, … the batch sums)",
             bench_shapes=(("cuda", (1 << 24,)), ("cpu", (1 << 20,))))
COMPOSITE = Form("composite", task_losses=True, gradient_of="(dL/dL1, …, dL/dLk, dL/d each learnable)")

FORMS: dict[str, Form] = {f.name: f for f in (ROW, ELEMENTWISE, BATCH, COMPOSITE)}
