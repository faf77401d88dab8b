"""Verdicts and reports: what ``lossc check`` says about each property, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

VERDICTS = ("proved", "refuted", "plausible", "unknown", "n/a")

# The properties, in the order reports list them.
PROPERTIES = ("convex", "calibrated", "proper", "symmetric", "bounded", "monotone", "smooth", "nonnegative",
              "stable")


@dataclass(frozen=True)
class Verdict:
    """One property's verdict and its evidence.

    ``proved`` carries the symbolic argument in ``evidence``; ``refuted`` carries a
    ``counterexample`` (the inputs and the numbers, re-evaluated in float64) and,
    when the refutation is symbolic, the argument; ``plausible`` says what was searched.
    """

    verdict: str
    evidence: str
    counterexample: dict | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    @property
    def reason(self) -> str:
        """The first line of the evidence: the one-line reason the CLI table shows."""
        return self.evidence.strip().splitlines()[0] if self.evidence.strip() else ""

    def as_dict(self) -> dict:
        out = {"verdict": self.verdict, "evidence": self.evidence}
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Verdict":
        return cls(data["verdict"], data["evidence"], data.get("counterexample"))


def proved(evidence: str) -> Verdict:
    return Verdict("proved", evidence)


def refuted(evidence: str, counterexample: dict) -> Verdict:
    return Verdict("refuted", evidence, counterexample)


def plausible(evidence: str) -> Verdict:
    return Verdict("plausible", evidence)


def unknown(evidence: str) -> Verdict:
    return Verdict("unknown", evidence)


def not_applicable(evidence: str) -> Verdict:
    return Verdict("n/a", evidence)


@dataclass
class Report:
    """name -> Verdict for every property, plus what was checked (loss, kind, parameter values)."""

    loss: str
    kind: str
    params: dict
    verdicts: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Verdict:
        return self.verdicts[name]

    def __iter__(self):
        return iter(self.verdicts)

    def __len__(self):
        return len(self.verdicts)

    def __contains__(self, name):
        return name in self.verdicts

    def keys(self):
        return self.verdicts.keys()

    def items(self):
        return self.verdicts.items()

    def values(self):
        return self.verdicts.values()

    def as_dict(self) -> dict:
        return {"loss": self.loss, "kind": self.kind, "params": self.params,
                "properties": {k: v.as_dict() for k, v in self.verdicts.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(data["loss"], data["kind"], data["params"],
                   {k: Verdict.from_dict(v) for k, v in data["properties"].items()})
