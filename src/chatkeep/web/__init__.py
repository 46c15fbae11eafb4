"""The web chat page: a prebuilt single-page app (``web/`` in the repository, built into ``dist/`` here), served
by chatkeep itself so that running it never needs Node."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DIST"]

#: The built app; ``index.html`` plus hashed files under ``assets/``.
DIST = Path(__file__).with_name("dist")
