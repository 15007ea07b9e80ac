"""An outage of the database is one warning as it begins, a reminder now and then, one line as it ends."""

from __future__ import annotations

import logging

import pytest

from newsroom.core.outages import OutageLog

LOGGER = "newsroom.tests.outages"


def test_an_outage_is_logged_once_reminded_of_and_its_end_says_how_long_it_lasted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    now = [100.0]
    outage = OutageLog(logging.getLogger(LOGGER), "the database at db.example", remind_every=30, clock=lambda: now[0])
    outage.succeeded()  # no outage: nothing to say
    for _ in range(50):  # twenty a second, as many requests, workers and leases fail
        outage.failed("connection refused")
        now[0] += 0.05
    assert outage.ongoing
    now[0] += 30
    outage.failed("connection refused")
    outage.succeeded()
    outage.succeeded()
    assert [record.getMessage() for record in caplog.records] == [
        "cannot reach the database at db.example (connection refused)",
        "still cannot reach the database at db.example after 32 s (51 attempts failed; the last: connection refused)",
        "reached the database at db.example again after 32.5 s (51 attempts failed)",
    ]
    assert not outage.ongoing
    outage.failed("timeout")  # the next outage is news again
    assert caplog.records[-1].getMessage() == "cannot reach the database at db.example (timeout)"
