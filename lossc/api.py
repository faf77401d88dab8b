"""The Python API: ``loss``, ``parse``, ``generate``, ``source``, ``catalog``."""

from __future__ import annotations

import hashlib
import importlib.util
import linecache
import re
import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .cache import code_digest, read_entry, write_entry
from .errors import LossError, LossKindError, LossNameError, LossParamError, LossSyntaxError, suggest
from .forms import FORMS
from .frontend import SourceFile, catalog_file, catalog_names, catalog_text, lower
from .ir import LossSpec
from .kinds import KINDS
from .passes import derive

_BARE_NAME = "expression"

# Memory bounds: the compiled entries, derived specs and loaded modules of the most recent CACHE_SIZE
# distinct losses are kept (least recently used dropped first). A dropped module leaves sys.modules and
# linecache; the losses built from it keep working, and all of it is freed once the last of them is.
CACHE_SIZE = 64


def _bare_source(expr: str, over: str, params: dict) -> str:
    if over not in KINDS:
        raise LossKindError(f"unknown kind {over!r}", hint=suggest(over, KINDS) or "kinds: " + ", ".join(KINDS))
    header = []
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LossParamError(f"parameter {name} of a bare expression must be a number, got {value!r}")
        if not name.isidentifier():
            raise LossNameError(f"{name!r} is not a valid parameter name")
        header.append(f"{name} = {float(value)!r}")
    if "\n" in expr or '"""' in expr:
        raise LossKindError("a bare expression is one line; write a .loss text for more")
    return f"loss {_BARE_NAME}({', '.join(header)}) over {over}:\n    return {expr}\n"


def _source_text(spec: str, over: str | None, params: dict, name: str | None = None) -> tuple[str, str, str | None]:
    """(text, file name, loss name or None for the file's main loss) of a spec, without parsing it.
    ``name`` picks one loss of a file or text (as ``path.loss:name`` does)."""
    if not isinstance(spec, str):
        raise LossError(f"a loss is given by a catalog name, a path or source text, not {type(spec).__name__}")
    if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", name)):
        raise LossNameError(f"name= takes the name of a loss, got {name!r}")
    if over is not None:
        if name is not None:
            raise LossParamError("name= picks a loss of a file or text, not of a bare expression (over=)")
        return _bare_source(spec, over, params), "<expression>", _BARE_NAME
    text, filename, main = _source_file(spec)
    return text, filename, name or main


_PICK = re.compile(r"(?P<path>.+\.loss):(?P<name>[A-Za-z_][A-Za-z_0-9]*)")


def _source_file(spec: str) -> tuple[str, str, str | None]:
    """(text, file name, loss name or None) of a catalog name, a path, ``path.loss:name`` or source text."""
    picked = _PICK.fullmatch(spec) if "\n" not in spec else None
    if picked is not None and not Path(spec).exists():
        text, filename, _ = _source_file(picked["path"])
        return text, filename, picked["name"]
    if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", spec):
        if spec in catalog_names():
            return catalog_text(spec), f"catalog/{spec}.loss", spec
        if not Path(spec).exists():
            raise LossNameError(f"no catalog loss named {spec}", hint=suggest(spec, catalog_names())
                                or "lossc catalog lists them; a path or source text works too")
    if "\n" not in spec and len(spec) < 4096 and not re.search(r"\bloss\b.*\bover\b", spec):
        path = Path(spec)
        if not path.is_file():
            raise LossNameError(f"no such loss file: {spec}")
        try:
            return path.read_text(encoding="utf-8"), str(path), None
        except (OSError, UnicodeDecodeError) as err:
            raise LossError(f"cannot read {spec}: {err}") from None
    return spec, "<string>", None


@lru_cache(maxsize=CACHE_SIZE)
def _derive(file_text: str, filename: str | None, name: str | None, structural: tuple) -> LossSpec:
    return derive(lower(SourceFile.from_text(file_text, filename), name, dict(structural)))


def _structural(params: dict) -> tuple:
    """Parameters that may shape the program (integers and vectors) as a hashable key."""
    torch = sys.modules.get("torch")  # (no tensor exists before torch is imported)

    def frozen(v):
        if torch is not None and isinstance(v, torch.Tensor):
            v = v.tolist() if v.dim() else v.item()
        return tuple(frozen(x) for x in v) if isinstance(v, (list, tuple)) else v
    return tuple((k, frozen(v)) for k, v in sorted(params.items()))


def parse(spec: str | LossSpec, *, over: str | None = None, name: str | None = None, **params) -> LossSpec:
    """The derived ``LossSpec`` of a catalog name, path, source text or bare expression (``over=``);
    ``name`` picks one loss of a file or text with several (default: the one named like the file, else
    the last)."""
    if isinstance(spec, LossSpec):
        return spec if spec.gradient is not None else derive(spec)
    text, filename, name = _source_text(spec, over, params, name)
    parsed = _derive_checked(text, filename, name, _structural_key(params, over))
    _check_param_names(parsed.name, [p.name for p in parsed.params], params)
    return parsed


def _structural_key(params: dict, over: str | None) -> tuple:
    try:
        key = _structural(params if over is None else {})
        hash(key)
    except TypeError as err:  # unhashable parameter values
        raise LossParamError(f"invalid parameter value: {err}") from None
    return key


def _derive_checked(text: str, filename: str, name: str | None, structural: tuple) -> LossSpec:
    try:
        return _derive(text, filename, name, structural)
    except RecursionError:  # a backstop: the front end caps nesting well below the recursion limit
        raise LossSyntaxError("expression nested too deeply", filename=filename) from None


def _check_param_names(loss_name: str, names: list[str], params: dict) -> None:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise LossParamError(f"{loss_name} has no parameter {unknown[0]}",
                             hint=suggest(unknown[0], names) or "parameters: " + (", ".join(names) or "none"))


def _compiled(spec: str | LossSpec, over: str | None, params: dict, target: str, name: str | None = None
              ) -> tuple[str, str]:
    entry = _compiled_entry(spec, over, params, target, name)
    return entry["name"], entry["source"]


def _compiled_entry(spec: str | LossSpec, over: str | None, params: dict, target: str, pick: str | None = None
                    ) -> dict:
    """(loss name, generated module source) of a spec for ``target``: from memory, else from the compile
    cache on disk, else parsed, derived and generated (and stored in both). A text spec's key is its text,
    file name, loss name, structural parameters, the target and ``lossc.cache.code_digest()``; a
    ``LossSpec``'s is its hash."""
    if isinstance(spec, LossSpec):
        parsed = parse(spec)
        key = _compile_key("spec", parsed.hash, target)
        entry = _recall(_MEMORY, key)
        if entry is None:
            entry = _remember(key, _entry(parsed, target))
        return entry
    return _text_entry(_source_text(spec, over, params, pick), over, params, target)


def _text_entry(source: tuple[str, str, str | None], over: str | None, params: dict, target: str) -> dict:
    """The compiled entry of (text, file name, loss name) as _source_text gives them."""
    text, filename, name = source
    structural = _structural_key(params, over)
    # a float that is not an integer never shapes the program (an integer parameter given one is refused
    # by the module), so gamma = 0.5 and gamma = 2.5 share one entry
    shaping = tuple((k, v) for k, v in structural if not (isinstance(v, float) and not v.is_integer()))
    key = _compile_key(text, filename, name, shaping, target)
    entry = _recall(_MEMORY, key)
    if entry is None:
        entry = read_entry("compile", key)
        if not _valid_entry(entry):
            entry = _entry(_derive_checked(text, filename, name, structural), target)
            _check_param_names(entry["name"], entry["params"], params)
            write_entry("compile", key, entry)
        _remember(key, entry)
    _check_param_names(entry["name"], entry["params"], params)
    return entry


_MEMORY: dict[str, dict] = {}


def _recall(cache: dict, key):
    """An LRU cache's value for key (now the most recent: a dict keeps its insertion order), or None."""
    value = cache.pop(key, None)
    if value is not None:
        cache[key] = value
    return value


def _evict(cache: dict) -> list:
    """The oldest values of an LRU cache past CACHE_SIZE, taken out of it."""
    return [cache.pop(next(iter(cache))) for _ in range(len(cache) - CACHE_SIZE)]


def _remember(key: str, entry: dict) -> dict:
    _MEMORY[key] = entry
    _evict(_MEMORY)
    return entry


def _compile_key(*parts) -> str:
    return hashlib.sha256(repr((parts, code_digest())).encode()).hexdigest()[:32]


def _entry(parsed: LossSpec, target: str) -> dict:
    from .codegen import generate_module  # (its printers import torch: not needed to parse or derive)
    source = generate_module(parsed, target)
    return {"name": parsed.name, "kind": parsed.kind, "form": parsed.form,
            "params": [p.name for p in parsed.params], "spec_hash": parsed.hash, "target": target, "source": source, "sha256": hashlib.sha256(source.encode()).hexdigest()}


def _valid_entry(entry) -> bool:
    """A whole entry: the fields lossc wrote, and a source whose digest matches."""
    return (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("name", "kind", "form", "source"))
            and isinstance(entry.get("params"), list) and all(isinstance(p, str) for p in entry["params"])
            and entry.get("sha256") == hashlib.sha256(entry["source"].encode("utf-8", "replace")).hexdigest())


def generate(spec: str | LossSpec, target: str = "torch", *, over: str | None = None, name: str | None = None,
             standalone: bool = False, **params) -> str:
    """The text of the module lossc compiles a loss to (``name``: as for ``parse``). It imports lossc's
    versioned runtime; ``standalone=True`` carries the runtime itself and needs no lossc installed."""
    _check_target(target)
    if standalone:
        from .codegen import generate_module
        return generate_module(parse(spec, over=over, name=name, **params), target, standalone=True)
    return _compiled(spec, over, params, target, name)[1]


def _check_target(target: str) -> None:
    from .codegen import TARGETS
    if target not in TARGETS:
        raise LossParamError(f"target must be one of {TARGETS}, got {target!r}")


_MODULES: dict[tuple[str, str], types.ModuleType] = {}


def _load(source: str, name: str) -> types.ModuleType:
    module = _recall(_MODULES, (source, name))
    if module is not None:
        return module
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module = types.ModuleType(f"lossc_generated_{name}_{digest}")
    # a file name linecache knows (triton.jit reads its kernels' source through inspect), and a module
    # sys.modules knows (torch.compile finds the globals of the functions it traces through it)
    module.__file__ = f"<lossc {name} {digest}>"
    linecache.cache[module.__file__] = (len(source), None, source.splitlines(keepends=True), module.__file__)
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # our own generated text
    _MODULES[(source, name)] = module
    for dropped in _evict(_MODULES):
        _forget(dropped)
    return module


def _forget(module: types.ModuleType) -> None:
    """A loaded module out of the process's registries (what _load and triton.jit put it in)."""
    if sys.modules.get(module.__name__) is module:
        del sys.modules[module.__name__]
    linecache.cache.pop(module.__file__, None)
    jit = sys.modules.get("triton.runtime.jit")
    registry = getattr(jit, "_triton_jit_function_registry", None)
    if isinstance(registry, dict):  # (triton keeps its kernels by "module:name" for the life of the process)
        for key in [key for key in registry if key.startswith(module.__name__ + ":")]:
            del registry[key]


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _target_for(backend: str) -> str:
    """The module a backend needs: the triton kernels too where it may pick them."""
    if backend == "triton" or (backend == "auto" and _triton_installed()):
        return "all"
    return "torch"


def module(spec: str | LossSpec, *, over: str | None = None, target: str = "torch", name: str | None = None,
           **params) -> types.ModuleType:
    """The generated module of a loss (``target``, ``name`` as for ``generate``), compiled and loaded (cached)."""
    _check_target(target)
    name, source = _compiled(spec, over, params, target, name)
    return _load(source, name)


class _KindDefault:
    """The default ``ignore_index`` of ``loss``: -100 for row losses (as nn.CrossEntropyLoss), None (nothing
    ignored) for elementwise and batch losses, whose targets are values."""

    def __repr__(self) -> str:
        return "-100 for row losses, None otherwise"


KIND_DEFAULT = _KindDefault()


def loss(spec: str | LossSpec, *, over: str | None = None, weight=None, ignore_index: int | None = KIND_DEFAULT,
         reduction: str = "mean", backend: str = "auto", validate: bool = True, batch_group=None,
         class_group=None, from_logits: bool = False, inplace_grad: bool = False, name: str | None = None,
         **params) -> torch.nn.Module:
    """A ``torch.nn.Module`` computing the loss: ``lossc.loss("focal", gamma=2.0)``.

    ``spec`` is a catalog name, a path to a ``.loss`` file, ``.loss`` source text, or a
    bare expression when ``over=`` names its kind. Parameters are keywords.
    ``ignore_index``: targets equal to it are dropped; None drops nothing. The default is -100 for row
    losses (multiclass, distribution) and None for elementwise and batch losses.
    Batch losses also take ``from_logits`` (the input is logits; s = sigmoid(input)) and
    ``batch_group`` (a ``torch.distributed`` process group: the batch sums are all-reduced over it).
    Row losses (multiclass, distribution) take ``class_group`` (a process group over which each row's
    classes are split: the input is this rank's contiguous block of the classes; see docs/distributed.md).
    Row and elementwise losses take ``inplace_grad``: the forward writes the gradient over the input (no
    gradient buffer; the input's values are gone after it — see docs/semantics.md).
    A tasks loss takes its parameters alone. ``name`` picks one loss of a file or text with several
    (as ``"path.loss:name"`` does; default: the loss named like the file, else the last one).
    The module pickles (``torch.save``) as its source text, parameters and options, and is rebuilt
    through ``lossc.loss`` when loaded.
    """
    options = dict(weight=weight, reduction=reduction, backend=backend, validate=validate,
                   batch_group=batch_group, class_group=class_group, from_logits=from_logits,
                   inplace_grad=inplace_grad)
    if ignore_index is not KIND_DEFAULT:
        options["ignore_index"] = ignore_index
    source = spec if isinstance(spec, LossSpec) else _source_text(spec, over, params, name)
    return _build(source, over, params, options)


def _build(source: LossSpec | tuple[str, str, str | None], over: str | None, params: dict,
           options: dict) -> torch.nn.Module:
    """The module of a spec (a LossSpec, or (text, file name, loss name) as _source_text gives them)."""
    backend = options.get("backend", "auto")
    entry = _compiled_entry(source, over, params, _target_for(backend)) if isinstance(source, LossSpec) \
        else _text_entry(source, over, params, _target_for(backend))
    name, form = entry["name"], FORMS[entry["form"]]
    from .codegen import class_name
    cls = getattr(_load(entry["source"], name), class_name(name))
    runtime = {} if over is not None else params
    if "batch_group" not in form.options and (options.get("batch_group") is not None or options.get("from_logits")):
        raise LossParamError(f"{name}: batch_group and from_logits are options of batch losses, not of "
                             f"{entry['kind']} losses")
    if "inplace_grad" not in form.options and options.get("inplace_grad"):
        raise LossParamError(f"{name}: inplace_grad is an option of row and elementwise losses, not of "
                             f"{entry['kind']} losses")
    if not form.rows and options.get("class_group") is not None:
        raise LossParamError(f"{name}: class_group splits the classes of row losses (multiclass, distribution), "
                             f"not of {entry['kind']} losses")
    accepted = form.options
    try:
        module = cls(**runtime, **{k: v for k, v in options.items() if k in accepted})
    except LossError:
        raise
    except TypeError as err:
        raise LossParamError(f"{name}: {err}") from None
    # what pickling needs to build it again in another process (see runtime.reduce_module)
    module._lossc_recipe = (_rebuild, (source, over if isinstance(source, LossSpec) else None, runtime))
    return module




def _rebuild(recipe: tuple, options: dict, state: dict, training: bool) -> torch.nn.Module:
    """A module unpickled: built again from its recipe and options, then given its saved state."""
    source, over, params = recipe
    module = _build(source, over, params, options)
    module.load_state_dict(state, assign=True)
    return module.train(training)


def source(name: str) -> str:
    """The ``.loss`` text of a catalog entry."""
    if name not in catalog_names():
        raise LossNameError(f"no catalog loss named {name}", hint=suggest(name, catalog_names()))
    return catalog_file(name).text


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog loss: name, kind, citation (the docstring's last line), parameters and defaults."""

    name: str
    kind: str
    citation: str
    params: dict
    vector_params: dict
    summary: str
    doc: str

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "citation": self.citation, "params": self.params,
                "vector_params": self.vector_params, "summary": self.summary}


def catalog() -> list[CatalogEntry]:
    """Every built-in loss, sorted by name."""
    entries = []
    for name in catalog_names():
        spec = lower(catalog_file(name), name)
        lines = [line.strip() for line in spec.doc.splitlines() if line.strip()]
        entries.append(CatalogEntry(
            name=name, kind=spec.kind, citation=lines[-1] if lines else "", summary=lines[0] if lines else "",
            params={p.name: p.default for p in spec.params if p.type != "vector"},
            vector_params={p.name: {"size": p.size, "default": list(p.default or ())}
                           for p in spec.params if p.type == "vector"},
            doc=spec.doc))
    return entries


def __getattr__(name: str):
    # codegen (and torch, which its printers import) loads on first use: parse and derive need neither
    if name in ("TARGETS", "class_name", "function_name"):
        from . import codegen
        return getattr(codegen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["loss", "parse", "generate", "source", "catalog", "module", "CatalogEntry", "class_name",
           "function_name"]
