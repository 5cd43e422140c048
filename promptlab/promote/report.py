"""The promotion report: parity, dev vs prod metrics with deltas, gates; terminal and markdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptlab.eval.compare import NonInferiority
from promptlab.eval.session import Outcome
from promptlab.promote.parity import Check

MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


@dataclass
class Report:
    """Everything a promotion found, in the order it found it."""

    flow: str
    version: str
    lock_path: str
    checks: list[Check] = field(default_factory=list)
    dev: Outcome | None = None
    prod: Outcome | None = None
    non_inferiority: list[NonInferiority] = field(default_factory=list)
    refused: str | None = None
    registered: str | None = None
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the flow was promoted."""
        return self.refused is None and self.registered is not None

    def lines(self, markdown: bool = False) -> list[str]:
        """The report as lines (plain text, or markdown for MLflow)."""
        h = "## " if markdown else ""
        out = [
            f"{'# ' if markdown else ''}promote {self.flow} -> version {self.version}",
            f"lock: {self.lock_path}",
            "",
            f"{h}parity checks",
        ]
        for check in self.checks:
            out.append(f"  {MARK[check.status]}  {check.name}: {check.summary}")
            out += [f"        {e}" for e in check.evidence]
        if self.dev and self.prod:
            out += [
                "",
                f"{h}dev ({self.dev.backend}, run {self.dev.run_id}) vs prod "
                f"({self.prod.backend}, run {self.prod.run_id})",
            ]
            out.append(f"  {'metric':<24} {'dev':>8} {'prod':>8} {'delta':>8}")
            for name, metric in self.prod.table.items():
                before = self.dev.table.get(name)
                if before is None or name.endswith(".errors") or before.n == 0:
                    continue
                delta = metric.estimate - before.estimate
                out.append(
                    f"  {name:<24} {before.estimate:>8.3g} {metric.estimate:>8.3g} {delta:>+8.3g}"
                )
        if self.prod:
            out += ["", f"{h}prod gates"]
            out += [
                f"  {'PASS' if g.passed else 'FAIL'}  {g.gate}   measured {g.value:.4g}"
                for g in self.prod.gates
            ]
        if self.non_inferiority:
            out += ["", f"{h}non-inferiority (prod - dev, paired, one-sided 95% bound)"]
            for v in self.non_inferiority:
                d = v.delta
                out.append(
                    f"  {'PASS' if v.passed else 'FAIL'}  {d.scorer:<16} {d.rate_a:.3f} -> "
                    f"{d.rate_b:.3f}  delta {d.delta:+.3f}, lower bound {d.low:+.3f} vs margin "
                    f"-{v.margin:g}  (n={d.n}, McNemar p={d.p_value:.3g})"
                )
        if self.timings:
            shown = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
            out += ["", f"time: {shown}"]
        out.append("")
        if self.refused:
            out.append(f"REFUSED: {self.refused}; nothing registered, no deployment files written")
        elif self.registered:
            out.append(f"PROMOTED: {self.registered}")
            out += [f"  wrote {f}" for f in self.files]
        return out

    def text(self) -> str:
        """The terminal report."""
        return "\n".join(self.lines())

    def markdown(self) -> str:
        """The report as markdown (logged to MLflow as report.md)."""
        return "\n".join(self.lines(markdown=True)) + "\n"
