"""The crash tests' seed and kill count in the run's output. Imported by tests/conftest.py:
with pytest-xdist the process that prints the summary collects no test, so it never reads
tests/crash/conftest.py."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.crash.harness import SEED_VARIABLE, pick_seed

KILLS_VARIABLE = "STAGEKEEPER_CRASH_KILLS"
CONTACTS_VARIABLE = "STAGEKEEPER_CRASH_CONTACTS"
KILLS = int(os.environ.get(KILLS_VARIABLE) or 2)  # landed kills per command and database
CONTACTS = int(os.environ.get(CONTACTS_VARIABLE) or 10_000)


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-xdist starts its processes, which inherit the seed chosen here.
    if not hasattr(config, "workerinput") and not os.environ.get(SEED_VARIABLE):
        os.environ[SEED_VARIABLE] = str(pick_seed())


def pytest_report_header(config: pytest.Config) -> str:
    seed = os.environ.get(SEED_VARIABLE)
    return (
        f"crash tests: seed {seed} (replay: {SEED_VARIABLE}={seed}); {KILLS} kills per command "
        f"and database ({KILLS_VARIABLE}), on {CONTACTS:,} contacts ({CONTACTS_VARIABLE})"
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up the kills the tests report (with pytest-xdist too: this runs where the reports
    are gathered)."""
    found = dict(report.user_properties).get("crash")
    if report.when == "call" and isinstance(found, dict):
        _totals["kills"] += found["kills"]
        _totals["failures"] += found["failures"]
        _totals["tests"] += 1
        _totals["seed"] = found["seed"]


_totals = {"kills": 0, "failures": 0, "tests": 0, "seed": 0}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _totals["tests"]:
        terminalreporter.write_line(
            f"crash tests: {_totals['kills']} kills in {_totals['tests']} tests, "
            f"{_totals['failures']} failures; seed {_totals['seed']} "
            f"(replay: {SEED_VARIABLE}={_totals['seed']})"
        )
