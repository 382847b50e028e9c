"""Errors that tell a user which file and layer is wrong, what is wrong, and how to fix it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ``scheme://user:password@host`` in a file name (a remote input): the password is never shown
_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/\s]*@")


@dataclass(frozen=True)
class Problem:
    """One problem with one input: where it is, what is wrong, and how to fix it."""

    kind: str
    file: str
    layer: str
    problem: str
    fix: str

    def __post_init__(self):
        object.__setattr__(self, "file", _URL_PASSWORD.sub(r"\1***@", str(self.file)))

    def __str__(self) -> str:
        return f"[{self.kind}] {self.file} (layer '{self.layer}'): {self.problem}. Fix: {self.fix}."


class EcoValueError(Exception):
    """Base class of every error eco-value reports to a user (exit code 2 in the CLI)."""

    exit_code = 2


class InputError(EcoValueError):
    """One or more inputs are unusable; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) with the inputs:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


class RuleSetError(EcoValueError):
    """A rule set (accounting_rules/*.toml) is malformed: unknown key, missing source, bad unit."""


class StoreError(EcoValueError):
    """The valuation store refused an operation (unknown run, double issuance, ...)."""
