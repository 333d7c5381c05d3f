"""Both ways the conversion panel can read a scope's entries into won and lost — everyone's in
the period, filtered by owner, or each owner's under the owner-led index, one age bucket at a
time — give the reference's figures. The random histories of the property test are far too small
for the cost estimate to choose the owner-led way, so this runs that test again with it forced."""

from __future__ import annotations

import pytest

import storage.report_queries
from tests.integration.test_report_properties import (
    test_the_database_reports_equal_the_reference_definitions as test_owner_led_entries_equal_the_reference,  # noqa: E501
)

__all__ = ["test_owner_led_entries_equal_the_reference"]


@pytest.fixture(autouse=True)
def owner_led_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.report_queries, "ENTRY_IN_SEEKS", 1e9)
