"""Timestamps as chatkeep writes them, in the API and in exports alike: UTC, ISO 8601, ending in ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["iso"]


def iso(moment: datetime, *, timespec: Literal["milliseconds", "microseconds"] = "milliseconds") -> str:
    """The timestamp as JavaScript's ``Date#toISOString()`` writes it: ``2026-08-22T10:00:00.000Z`` (milliseconds
    truncated, like JavaScript's; a naive ``moment`` is taken as local time). ``timespec="microseconds"`` keeps
    everything the database stores (``2026-08-22T10:00:00.000123Z``: what an export needs to be lossless), which
    ``Date.parse`` and Python's ``datetime.fromisoformat`` read as well.

    ``isoformat`` of a UTC time ends in ``+00:00``, swapped for ``Z``: twice as fast as ``strftime``, and a thread
    of 1,000 messages formats 1,000 of these per load.
    """
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec)[:-6] + "Z"
