"""Named errors. The CLI turns every subclass of :class:`JobcareError` into a clear message and exit 2."""

from __future__ import annotations

from dataclasses import dataclass, field


class JobcareError(Exception):
    """Base class of every error the project raises on purpose (bad input, bad config, bad data)."""


class ConfigError(JobcareError):
    """A configuration file is missing, is not valid YAML, or breaks the config model."""


@dataclass
class Violation:
    """One broken data-contract rule: which rule, table, column, how many rows and a few examples."""

    rule: str
    table: str
    column: str
    n_rows: int
    examples: list[dict] = field(default_factory=list)
    detail: str = ""

    def __str__(self) -> str:
        ex = "; ".join(str(e) for e in self.examples[:3])
        more = f" {self.detail}" if self.detail else ""
        return f"[{self.rule}] {self.table}.{self.column}: {self.n_rows} row(s){more}" + (
            f" e.g. {ex}" if ex else ""
        )


class ContractError(JobcareError):
    """A world (or any table set) breaks one or more data-contract rules."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"{len(violations)} data-contract violation(s):\n{lines}")

    @property
    def rules(self) -> set[str]:
        """The names of the broken rules."""
        return {v.rule for v in self.violations}
