"""Eval suites: YAML files naming a flow, a dataset, scorers and per-stage gates.

```yaml
flow: ../flows/triage.py          # relative to this file; FILE[@name]
dataset:
  file: data/triage.jsonl         # .jsonl or .csv, relative to this file; or `cases:` inline
scorers:
  - {name: category, kind: field_equals, field: category}
gates:
  dev:  ["category.rate >= 0.4"]
  prod: ["category.rate.low >= 0.4", "error.rate == 0"]
```

A case is ``{id, inputs, expect, tags}``. ``plugins`` lists Python files (relative to the
suite) that register custom scorer kinds with ``@scorer``. A scorer reads its expectation from
``expect[<expect key>]`` (the key defaults to the scorer's name). Unknown keys anywhere are
errors; ``promptlab eval --schema`` prints the JSON schema for editors.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from promptlab.declare.variants import check_fields, check_name
from promptlab.errors import DeclarationError, UserError, did_you_mean, first_problem, one_line

Stage = Literal["dev", "prod"]
OPERATIONAL = ("latency", "tokens_in", "tokens_out", "error")


class SuiteError(UserError):
    """An eval suite or its dataset is invalid."""


class Case(BaseModel):
    """One example: the flow's inputs and what a scorer expects of the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    inputs: dict[str, Any]
    expect: dict[str, Any] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()


class Dataset(BaseModel):
    """Cases inline, or from a JSONL / CSV file next to the suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    cases: tuple[Case, ...] = ()

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        if bool(self.file) == bool(self.cases):
            raise ValueError("give either `file` or `cases`")
        return self


class ScorerSpec(BaseModel):
    """A scorer to apply: its metric name, its kind, and the kind's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    kind: str
    expect: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The kind-specific settings (every key besides name, kind and expect)."""
        return dict(self.model_extra or {})

    @property
    def expect_key(self) -> str:
        """Which ``expect`` entry of a case this scorer compares against."""
        return self.expect or self.name


class Gate(BaseModel):
    """A threshold on an aggregate metric, e.g. ``category.rate >= 0.8``.

    A metric is ``<scorer>.<stat>`` with stat ``mean`` or ``rate``, operational metrics are
    ``latency.p50|p95|max``, ``tokens_in.mean``, ``tokens_out.mean`` and ``error.rate``; append
    ``.low`` or ``.high`` to use a bound of the metric's 95% interval instead of its estimate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    op: Literal[">=", "<=", ">", "<", "=="]
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Parse ``"metric op number"``."""
        parts = text.split()
        if len(parts) != 3:
            raise ValueError(f"gate {text!r} is not `metric op number`, e.g. `correct.rate >= 0.8`")
        metric, op, number = parts
        return cls.model_validate({"metric": metric, "op": op, "threshold": float(number)})

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def check(self, value: float) -> bool:
        """Whether ``value`` passes (NaN never does)."""
        ops = {
            ">=": value >= self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
            "==": value == self.threshold,
        }
        return ops[self.op]


class RunSettings(BaseModel):
    """Run settings a suite may fix (the command line overrides them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repeats: int = Field(default=1, ge=1, le=100)
    concurrency: int | None = Field(default=None, ge=1, le=256)
    timeout_s: float = Field(default=300, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    #: Cases in a row that fail on the backend (retries spent) before the run stops.
    breaker: int = Field(default=10, ge=1)


class Suite(BaseModel):
    """An eval suite as written in YAML, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flow: str
    description: str = ""
    dataset: Dataset
    scorers: tuple[ScorerSpec, ...] = Field(min_length=1)
    gates: dict[Stage, tuple[Gate, ...]] = Field(default_factory=dict)
    settings: RunSettings = RunSettings()
    # Promotion's non-inferiority margins: how much lower prod's pass rate may be than dev's
    # (per scorer, or "default").
    margins: dict[str, float] = Field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    #: Prompt variants: variant name -> prompt name -> field overrides (``--variant P@NAME``).
    variants: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="prompt variants: name -> prompt name -> overrides of its fields "
        "(system, user, examples, temperature, max_tokens, ...); run with "
        "`promptlab eval SUITE --variant PROFILE --variant PROFILE@NAME`",
    )
    path: Path = Field(default=Path("."), exclude=True)
    _cases: list[Case] | None = PrivateAttr(default=None)

    @field_validator("gates", mode="before")
    @classmethod
    def _parse_gates(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            stage: [Gate.parse(g) if isinstance(g, str) else g for g in gates or []]
            for stage, gates in value.items()
        }

    @field_validator("variants")
    @classmethod
    def _check_variants(
        cls, value: dict[str, dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            for variant, prompts in value.items():
                check_name(variant, f"variant name {variant!r}")
                for prompt, fields in prompts.items():
                    check_fields(fields, f"variant '{variant}' of prompt '{prompt}'")
        except DeclarationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_names(self) -> Suite:
        names = [s.name for s in self.scorers]
        if len(set(names)) != len(names):
            raise ValueError(f"scorer names must be unique: {names}")
        unknown = sorted(set(self.margins) - {*names, "default"})
        if unknown:
            raise ValueError(f"margins name no scorer: {', '.join(unknown)} (scorers: {names})")
        known = {*names, *OPERATIONAL}
        for stage, gates in self.gates.items():
            for gate in gates:
                base = gate.metric.split(".")[0]
                if base not in known:
                    raise ValueError(
                        f"{stage} gate `{gate}` names no scorer or operational metric"
                        f"{': ' + did_you_mean(base, known) if did_you_mean(base, known) else ' '}"
                        f"(scorers: {', '.join(names)}; also {', '.join(OPERATIONAL)})"
                    )
        return self

    @property
    def name(self) -> str:
        """The suite's file name without suffix."""
        return self.path.stem

    @property
    def flow_ref(self) -> str:
        """The flow reference, resolved against the suite's folder."""
        file, sep, name = self.flow.partition("@")
        return str((self.path.parent / file).resolve()) + (sep + name if sep else "")

    def cases(self) -> list[Case]:
        """Every case, inline or read from the dataset file (read once per suite object)."""
        if self._cases is None:
            if self.dataset.cases:
                cases = list(self.dataset.cases)
            else:
                cases = _read_cases(self.path.parent / str(self.dataset.file))
            duplicates = sorted(i for i, n in Counter(c.id for c in cases).items() if n > 1)
            if duplicates:
                shown = ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
                raise SuiteError(
                    f"{self.path}: {len(duplicates)} duplicate case ids ({shown}): make ids unique"
                )
            self._cases = cases
        return list(self._cases)

    def fingerprint(self) -> str:
        """Content hash of the suite and its cases: what the results and gate verdicts depend on.

        Promotion margins are left out: tuning them needs no new dev baseline (the lock keeps
        them under their own hash). So are prompt variants: a variant's run carries its own
        flow hash.
        """
        exclude = {"path", "margins", "variants"}
        digest = hashlib.sha256(self.model_dump_json(exclude=exclude).encode())
        for case in self.cases():
            digest.update(case.model_dump_json().encode())
        return digest.hexdigest()


def _read_cases(path: Path) -> list[Case]:
    if not path.is_file():
        raise SuiteError(f"dataset {path} not found: fix dataset.file in the suite")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SuiteError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    elif path.suffix == ".csv":
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append(_csv_case(row))
    else:
        raise SuiteError(f"dataset {path}: use a .jsonl or .csv file")
    cases = []
    for number, row in enumerate(rows, 1):
        try:
            cases.append(Case.model_validate(row))
        except ValidationError as exc:
            where, message = first_problem(exc)
            raise SuiteError(f"{path}: case {number}: {where}: {message}") from None
    return cases


def _csv_case(row: dict[str, str]) -> dict[str, Any]:
    """CSV columns: ``id``, ``tags`` (``;``-separated), ``input.X`` and ``expect.X``."""
    case: dict[str, Any] = {"inputs": {}, "expect": {}}
    for column, value in row.items():
        if column == "id":
            case["id"] = value
        elif column == "tags":
            case["tags"] = [t for t in value.split(";") if t]
        elif column.startswith("input."):
            case["inputs"][column.removeprefix("input.")] = value
        elif column.startswith("expect."):
            case["expect"][column.removeprefix("expect.")] = value
        else:
            raise SuiteError(f"CSV column {column!r}: use id, tags, input.NAME or expect.NAME")
    return case


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; errors name the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite {path} not found: give a YAML file (evals/*.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: invalid YAML: {one_line(str(exc))}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping with flow, dataset, scorers, gates")
    try:
        return Suite.model_validate({**data, "path": path.resolve()})
    except ValidationError as exc:
        where, message = first_problem(exc)
        raise SuiteError(
            f"{path}: {where}: {message.removeprefix('Value error, ')}: fix the suite"
        ) from None


def suite_schema() -> dict[str, Any]:
    """The JSON schema of suite files, for editors."""
    schema = Suite.model_json_schema()
    schema["properties"].pop("path", None)
    return schema
