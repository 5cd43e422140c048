"""pytest runs promptlab eval suites: one test item per case, one per gate of the stage.

Installed as a ``pytest11`` plugin::

    pytest evals/triage.yaml --promptlab-backend ollama --junitxml=out.xml
    pytest evals/ -k "billing or gate" -m high_priority

A YAML file is collected when it is a promptlab suite (it has ``flow``, ``dataset`` and
``scorers``) and pytest was pointed at it (a path on the command line, or under ``testpaths``):
a bare ``pytest`` walking the whole project never collects suites.

The selected cases of a suite run together, concurrently, the first time one of its items
runs (in each process): a case item fails when a scorer fails it or the flow errs; a gate
item fails when its gate fails over the selected cases. Case tags become markers. Under
pytest-xdist, ``--dist loadgroup`` keeps each suite on one worker (its items carry an
``xdist_group``); with other modes every worker runs the cases of the suites it got items of.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from promptlab.declare.flow import Flow
    from promptlab.eval.aggregate import GateResult, Metric
    from promptlab.eval.results import CaseResult
    from promptlab.eval.session import Outcome, Recorder
    from promptlab.eval.suite import Case, Suite
    from promptlab.runtime.result import RunResult

SUITE_KEYS = {"flow", "dataset", "scorers"}
MARKER = "promptlab"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--promptlab-backend``, ``--promptlab-stage`` and ``--promptlab-no-track``."""
    group = parser.getgroup("promptlab", "promptlab eval suites")
    group.addoption(
        "--promptlab-backend",
        metavar="PROFILE",
        help="backend profile the suites run on (default: the project's default_backend)",
    )
    group.addoption(
        "--promptlab-stage",
        choices=("dev", "prod"),
        default="dev",
        help="whose gates become test items (default: dev)",
    )
    group.addoption(
        "--promptlab-no-track",
        action="store_true",
        help="do not record the eval runs in the tracking store",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers the suite items carry."""
    config.addinivalue_line("markers", f"{MARKER}: a case or gate of a promptlab eval suite")
    config.addinivalue_line("markers", "promptlab_gate: a gate of a promptlab eval suite")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A promptlab suite pytest was pointed at, as a collector of its case and gate items."""
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if parent.config.args_source == pytest.Config.ArgsSource.INVOCATION_DIR:
        return None
    if not _is_suite(file_path):
        return None
    collector: pytest.Collector = SuiteFile.from_parent(parent, path=file_path)
    return collector


def _is_suite(path: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and set(data) >= SUITE_KEYS


def _marker_name(tag: str) -> str:
    name = re.sub(r"\W", "_", tag)
    return f"_{name}" if name[:1].isdigit() else name


class SuiteFile(pytest.File):
    """A suite file: its cases, then its gates for the chosen stage."""

    def collect(self) -> Iterator[pytest.Item]:
        """One item per case, then one per gate."""
        from promptlab.eval.suite import load_suite

        suite = load_suite(self.path)
        config = self.config
        stage = config.getoption("promptlab_stage")
        run = SuiteRun(suite, stage)
        group = None
        if config.pluginmanager.hasplugin("xdist"):
            group = pytest.mark.xdist_group(f"promptlab:{self.path}")
        for case in suite.cases():
            item = CaseItem.from_parent(self, name=case.id, run=run, case_id=case.id)
            item.add_marker(MARKER)
            for tag in case.tags:
                name = _marker_name(tag)
                config.addinivalue_line("markers", f"{name}: promptlab case tag {tag!r}")
                item.add_marker(name)
            if group is not None:
                item.add_marker(group)
            yield item
        for gate in suite.gates.get(stage, ()):
            gate_item = GateItem.from_parent(self, name=f"gate[{gate}]", run=run, gate=str(gate))
            gate_item.add_marker(MARKER)
            gate_item.add_marker("promptlab_gate")
            if group is not None:
                gate_item.add_marker(group)
            yield gate_item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        """A promptlab error (a broken suite) as its one line."""
        from promptlab.errors import PromptlabError

        if isinstance(excinfo.value, PromptlabError):
            return f"{self.path}: {excinfo.value}"
        return str(super().repr_failure(excinfo))


@dataclass
class SuiteRun:
    """A suite's selected cases, run once per process the first time one of its items runs."""

    suite: Suite
    stage: str
    outcome: Outcome | None = None
    failure: BaseException | None = None
    selected: list[str] = field(default_factory=list)

    def get(self, item: pytest.Item) -> Outcome:
        """The outcome of the selected cases (run now if not yet); re-raises a run's error."""
        if self.outcome is None and self.failure is None:
            try:
                self.outcome = self._run(item)
            except Exception as exc:
                self.failure = exc
        if self.failure is not None:
            raise self.failure
        assert self.outcome is not None
        return self.outcome

    def _run(self, item: pytest.Item) -> Outcome:
        from promptlab.backends import create_backend
        from promptlab.config import backend_settings
        from promptlab.eval.session import Options, run_suite
        from promptlab.runtime.loader import load_flow

        parent = item.parent
        mine = [
            i.case_id for i in item.session.items if isinstance(i, CaseItem) and i.parent is parent
        ]
        self.selected = mine or [c.id for c in self.suite.cases()]
        suite = _subset(self.suite, self.selected)
        flow = load_flow(suite.flow_ref)
        config = item.config
        name = config.getoption("promptlab_backend")
        settings = backend_settings(flow.base_dir, backend=name)
        backend = create_backend(settings.profile(name), settings.root)
        recorder: Recorder = _NullRecorder()
        store = None
        if not config.getoption("promptlab_no_track"):
            from promptlab.tracking import open_store
            from promptlab.tracking.evals import EvalRecorder

            store = open_store(settings)
            recorder = EvalRecorder(store)
        options = Options(stage="prod" if self.stage == "prod" else "dev")
        outcome = run_suite(suite, backend, settings, options, recorder)
        if store is not None:
            from promptlab.tracking.baseline import tag_branch

            tag_branch(store, outcome.run_id, self.suite.path.parent)
        return outcome


def _subset(suite: Suite, ids: Sequence[str]) -> Suite:
    if len(ids) == len(suite.cases()):
        return suite
    from promptlab.eval.suite import Suite

    wanted = set(ids)
    cases = [c.model_dump() for c in suite.cases() if c.id in wanted]
    data = suite.model_dump(exclude={"path"})
    return Suite.model_validate({**data, "dataset": {"cases": cases}, "path": suite.path})


class _NullRecorder:
    """Records nothing (``--promptlab-no-track``)."""

    def start(self, name: str, params: dict[str, Any], resume: str | None) -> str:
        return f"pytest-{uuid.uuid4().hex[:12]}"

    def register_prompts(self, run_id: str, flow: Flow, flow_hash: str) -> None:
        return None

    def record_case(self, run_id: str, case: Case, result: CaseResult, run: RunResult) -> None:
        return None

    def finish(
        self,
        run_id: str,
        table: dict[str, Metric],
        results: Sequence[CaseResult],
        gates: Sequence[GateResult],
        stage: str,
        scorer_calls: Sequence[dict[str, Any]],
    ) -> None:
        return None

    def abort(self, run_id: str) -> None:
        return None

    def fail(self, run_id: str) -> None:
        return None


class EvalFailure(Exception):
    """A case or gate that did not pass: the message is the report."""


class CaseItem(pytest.Item):
    """One case of a suite (every repeat): passes when the flow ran and no scorer failed it."""

    def __init__(self, *, run: SuiteRun, case_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.case_id = case_id

    def runtest(self) -> None:
        """Look up (or run) the case's results and fail on a FAIL, an ERROR or a flow error."""
        outcome = self.run.get(self)
        results = [r for r in outcome.results if r.case_id == self.case_id]
        self.user_properties.append(("promptlab_run", outcome.run_id))
        problems = []
        for r in results:
            prefix = f"repeat {r.repeat}: " if len(results) > 1 else ""
            if r.error is not None:
                problems.append(f"{prefix}flow error: {r.error}")
            for name, score in r.scores.items():
                if score.status != "PASS":
                    detail = f" ({score.detail})" if score.detail else ""
                    problems.append(f"{prefix}{name} {score.status}{detail}")
            self.user_properties.append((f"scores#{r.repeat}", _scores(r)))
        if not results:
            raise EvalFailure(f"case {self.case_id} did not run in eval {outcome.run_id}")
        if problems:
            import json

            first = results[0]
            inputs = json.dumps(first.inputs, ensure_ascii=False, default=str)[:500]
            output = json.dumps(first.output, ensure_ascii=False, default=str)[:500]
            raise EvalFailure(f"{'; '.join(problems)}\ninputs: {inputs}\noutput: {output}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        """The failing scorers, the inputs and the output (no traceback)."""
        return _failure_text(excinfo, super().repr_failure)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the case lives: its suite."""
        return self.path, None, f"promptlab case {self.case_id}"


class GateItem(pytest.Item):
    """One gate of the stage, checked over the selected cases of its suite."""

    def __init__(self, *, run: SuiteRun, gate: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.gate = gate

    def runtest(self) -> None:
        """Fail when the gate failed."""
        outcome = self.run.get(self)
        self.user_properties.append(("promptlab_run", outcome.run_id))
        [verdict] = [g for g in outcome.gates if g.gate == self.gate]
        if not verdict.passed:
            raise EvalFailure(
                f"gate {verdict.gate} failed: measured {verdict.value:.4g} over "
                f"{len(self.run.selected)} cases (run {outcome.run_id})"
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        """The gate, what it measured, and the run."""
        return _failure_text(excinfo, super().repr_failure)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the gate lives: its suite."""
        return self.path, None, f"promptlab {self.gate}"


def _scores(result: CaseResult) -> str:
    return ", ".join(f"{n} {s.status}" for n, s in result.scores.items())


def _failure_text(excinfo: pytest.ExceptionInfo[BaseException], fallback: Any) -> str:
    from promptlab.errors import PromptlabError

    if isinstance(excinfo.value, EvalFailure | PromptlabError):
        return str(excinfo.value)
    return str(fallback(excinfo))
