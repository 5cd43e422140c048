"""``promptlab promote``: freeze, prove on vLLM, register, deploy; nothing half-done on failure.

Order: dev baseline (the latest passing dev eval of this flow and suite, or a new one), prod
servers (launched from the pinned arguments, or given), the lock (written read-only to the
state folder), parity checks, prod gates, non-inferiority against the baseline. Only when all
pass: the deployment files, an MLflow bundle, a registered version and the alias.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.config import Settings, load_settings
from promptlab.declare.flow import Flow
from promptlab.errors import UserError
from promptlab.eval.aggregate import metrics
from promptlab.eval.compare import non_inferiority
from promptlab.eval.results import CaseResult
from promptlab.eval.session import Options, Outcome, run_suite
from promptlab.eval.suite import Suite
from promptlab.hashing import file_hash
from promptlab.promote import parity
from promptlab.promote.launch import launched
from promptlab.promote.lock import Lock, build_lock, lock_dir, vllm_args, write_lock
from promptlab.promote.report import Report
from promptlab.promote.targets import dev_profile, with_dev
from promptlab.promote.tools import check_tools
from promptlab.runtime.loader import load_flow
from promptlab.tracking import open_store, tracked_run
from promptlab.tracking.evals import (
    MODEL_ID_TAG,
    EvalRecorder,
    latest_passing_eval,
    load_results,
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    suite: Suite
    url: str | None = None
    launch: bool = False
    alias: str | None = None
    limit: int | None = None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def promote(request: Request, settings: Settings, say: Say = _say) -> Report:
    """Run the whole promotion; the report says whether it passed and why not."""
    started = time.monotonic()
    suite = request.suite
    flow = load_flow(suite.flow_ref)
    dev_name, why = dev_profile(settings, open_store(settings), flow.name, suite.name)
    settings = with_dev(settings, dev_name)
    promotion = settings.promote
    dev = create_backend(settings.profile(promotion.dev), settings.root)
    options = Options(stage="dev", limit=request.limit)
    say(f"promote {flow.name}: dev {dev.name} ({why}) -> prod {promotion.prod}")
    baseline = _baseline(flow, suite, dev, settings, options, say)
    timings = {"dev baseline": time.monotonic() - started}
    with _prod_servers(flow, settings, request, say) as prod_settings:
        timings["vLLM start"] = time.monotonic() - started - sum(timings.values())
        prod = create_backend(prod_settings.profile(promotion.prod), settings.root)
        lock = asyncio.run(_freeze(flow, suite, dev, prod, settings))
        frozen = write_lock(lock, settings.state_dir / "promotions" / flow.name / lock.version)
        say(f"froze {flow.name} as version {lock.version}: {frozen}")
        report = Report(flow.name, lock.version, str(frozen))
        report.dev = baseline[0]
        say("parity checks ...")
        report.checks = asyncio.run(_parity(flow, suite, dev, prod, settings, baseline[1]))
        failed = [c.name for c in report.checks if c.status == "fail"]
        if failed:
            report.refused = f"parity check failed: {', '.join(failed)}"
        else:
            say(f"prod eval on {prod.name} (stage prod) ...")
            extra = (("lock_hash", lock.digest), ("promotion", lock.version))
            prod_options = Options(  # promotion measures prod afresh, never from a cache
                stage="prod", limit=request.limit, extra_params=extra, cache=False
            )
            recorder = EvalRecorder(open_store(prod_settings))
            report.prod = run_suite(suite, prod, prod_settings, prod_options, recorder)
            report.non_inferiority = non_inferiority(baseline[1], report.prod.results, lock.margins)
            report.refused = _refusal(report)
        timings["checks and gates"] = time.monotonic() - started - sum(timings.values())
    if report.refused is None:
        _publish(report, lock, flow, suite, settings, request.alias or promotion.alias)
    timings["total"] = time.monotonic() - started
    report.timings = timings
    _log_report(report, lock, settings)
    return report


def _refusal(report: Report) -> str | None:
    assert report.prod is not None
    gates = [str(g.gate) for g in report.prod.gates if not g.passed]
    worse = [v.delta.scorer for v in report.non_inferiority if not v.passed]
    reasons = []
    if gates:
        reasons.append(f"prod gate failed: {', '.join(gates)}")
    if worse:
        reasons.append(f"prod is worse than dev beyond the margin on {', '.join(worse)}")
    return "; ".join(reasons) or None


def _baseline(
    flow: Flow, suite: Suite, dev: Backend, settings: Settings, options: Options, say: Say
) -> tuple[Outcome, list[CaseResult]]:
    """The latest passing dev eval of this flow and suite on dev, or a fresh one."""
    store = open_store(settings)
    flow_hash = file_hash(Path(suite.flow_ref.partition("@")[0]))
    total = len(suite.cases())
    cases = total if options.limit is None else min(options.limit, total)
    wanted = {
        "flow_hash": flow_hash,
        "suite_hash": suite.fingerprint(),
        "backend": dev.name,
        "cases": str(cases),
    }
    run_id = latest_passing_eval(store, wanted, stage="dev")
    if run_id is not None:
        say(f"dev baseline: passing dev eval {run_id}")
        results = load_results(store, run_id)
        table = metrics(results, [s.name for s in suite.scorers])
        return Outcome(suite.name, run_id, dev.name, "dev", table, [], results), results
    say(f"dev baseline: no passing dev eval of this flow and suite yet; running it on {dev.name}")
    outcome = run_suite(suite, dev, settings, options, EvalRecorder(store))
    if not outcome.passed:
        failing = ", ".join(str(g.gate) for g in outcome.gates if not g.passed)
        raise UserError(
            f"the dev eval (run {outcome.run_id}) fails its gates ({failing}): fix the flow on "
            f"dev first (`promptlab eval {suite.path}`), then promote"
        )
    return outcome, outcome.results


@contextlib.contextmanager
def _prod_servers(flow: Flow, settings: Settings, request: Request, say: Say) -> Iterator[Settings]:
    """Settings whose prod profile points at the servers to prove the flow on."""
    name = settings.promote.prod
    profile = settings.profile(name)
    if not request.launch:
        if request.url:
            yield load_settings(settings.root, overrides={"backends": {name: {"url": request.url}}})
        else:
            yield settings
        return
    servers = list(vllm_args(flow, settings).values())
    say(f"launching vLLM for {', '.join(s.served_model_name for s in servers)} ...")
    interactive = sys.stderr.isatty()
    shown = {"at": 0.0}

    def on_wait(elapsed: float, waiting: list[str]) -> None:
        line = f"  vLLM starting: {elapsed:4.0f}s, waiting for {', '.join(waiting) or 'none'}"
        if interactive:
            print(f"\r{line}", end="" if waiting else "\n", file=sys.stderr, flush=True)
        elif elapsed - shown["at"] >= 15 or not waiting:
            shown["at"] = elapsed
            say(line)

    with launched(servers, settings.promote.launch, settings.root, on_wait) as urls:
        models: dict[str, Any] = {}
        for logical, url in urls.items():
            models[logical] = {"name": profile.model(logical).label, "url": url}
        override = {"url": urls.get("chat", next(iter(urls.values()))), "models": models}
        yield load_settings(settings.root, overrides={"backends": {name: override}})


async def _freeze(
    flow: Flow, suite: Suite, dev: Backend, prod: Backend, settings: Settings
) -> Lock:
    digests: dict[str, str] = {}
    templates: dict[str, str] = {}
    chats = {p.model for p in flow.prompts}
    for logical in flow.models:
        found = await dev.model_digest(logical)
        if found is not None:
            digests[logical] = found
    versions = {**await dev.server_version(), **await prod.server_version()}
    for logical in chats:
        templates[f"dev.{logical}"] = await dev.chat_template(logical) or ""
        templates[f"prod.{logical}"] = _prod_template(settings, logical)
    margins = dict(suite.margins)
    return build_lock(
        flow,
        suite,
        settings,
        dev_digests=digests,
        templates=templates,
        server_versions=versions,
        margins=margins,
    )


def _prod_template(settings: Settings, logical: str) -> str:
    """The chat template prod applies: the pinned file, or the one shipped with the weights."""
    served = settings.promote.served(logical)
    if served.chat_template:
        return (settings.root / served.chat_template).read_text()
    folder = settings.root / served.source
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    config = folder / "tokenizer_config.json"
    if config.is_file():
        return str(json.loads(config.read_text()).get("chat_template") or "")
    return ""


async def _parity(
    flow: Flow,
    suite: Suite,
    dev: Backend,
    prod: Backend,
    settings: Settings,
    baseline: list[CaseResult],
) -> list[parity.Check]:
    windows = {
        logical: settings.promote.served(logical).max_model_len or prod.spec(logical).context_window
        for logical in flow.models
    }
    checks = await parity.check_templates(flow, dev, prod)
    checks.append(parity.check_sampling(flow, dev, prod, windows, baseline))
    checks += await parity.check_embeddings(flow, suite, dev, prod, settings.state_dir)
    checks.append(await parity.check_outputs(flow, suite, prod, settings.state_dir))
    return checks + await check_tools(flow, dev, prod, settings)


def _bundle_files(flow: Flow, suite: Suite, settings: Settings) -> list[Path]:
    files = [Path(suite.flow_ref.partition("@")[0]), suite.path.resolve()]
    if suite.dataset.file:
        files.append((suite.path.parent / suite.dataset.file).resolve())
    for retriever in flow.retrievers:
        files += [path for _, path in retriever.files()]
    for name in ("promptlab.toml", "pyproject.toml"):
        if (settings.root / name).is_file():
            files.append(settings.root / name)
            break
    return [f for f in dict.fromkeys(files) if settings.root in f.resolve().parents]


def _publish(
    report: Report, lock: Lock, flow: Flow, suite: Suite, settings: Settings, alias: str
) -> None:
    """Deployment files, the MLflow bundle, the registered version and the alias."""
    from promptlab.promote.deploy import write_deployment
    from promptlab.promote.registry import log_bundle, register, registered_name

    folder = lock_dir(settings, lock.flow, lock.version)
    lock_path = write_lock(lock, folder)
    written = write_deployment(lock, folder)
    report.lock_path = str(lock_path.relative_to(settings.root))
    report.files = [str(p.relative_to(settings.root)) for p in [lock_path, *written]]
    store = open_store(settings)
    assert report.prod is not None
    name = f"promote {lock.flow} {lock.version}"
    params = {"lock_hash": lock.digest, "version": lock.version}
    with tracked_run(store, name, params=params) as run_id:
        report.run_id = run_id
        files = _bundle_files(flow, suite, settings)
        source = log_bundle(store, run_id, folder, files, settings.root)
        tags = {
            "promptlab.dev_run": report.dev.run_id if report.dev else "none",
            "promptlab.prod_run": report.prod.run_id,
            "promptlab.promotion_run": run_id,
            "promptlab.parity": ", ".join(f"{c.name}: {c.status}" for c in report.checks),
        }
        prod_run = store.get_run(report.prod.run_id)
        model_id = prod_run.tags.get(MODEL_ID_TAG) if prod_run else None
        version, previous = register(store, lock, source, run_id, alias, tags, model_id)
        report.registered = f"{registered_name(lock.flow)} version {version}, alias '{alias}'" + (
            f" (was version {previous})" if previous else ""
        )
        store.set_tags(run_id, {"promptlab.registered": str(version)})


def _log_report(report: Report, lock: Lock, settings: Settings) -> None:
    """The report and the parity evidence, tracked as the promotion run (passed or refused)."""
    store = open_store(settings)
    name = f"promote {lock.flow} {lock.version}"
    params = {"lock_hash": lock.digest, "version": lock.version}
    with tracked_run(store, name, params=params, run_id=report.run_id) as run_id:
        promoted = "yes" if report.passed else "no"
        store.set_tags(run_id, {"promptlab.kind": "promotion", "promptlab.promoted": promoted})
        store.log_text(run_id, report.markdown(), "report.md")
        store.log_dict(run_id, [c.model_dump() for c in report.checks], "parity.json")
        store.log_dict(run_id, lock.model_dump(mode="json"), "promptlab.lock.json")
        timings = {f"time.{k.replace(' ', '_')}": v for k, v in report.timings.items()}
        store.log_metrics(run_id, timings)
