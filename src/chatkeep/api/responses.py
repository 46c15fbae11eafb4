"""JSON responses encoded once, with orjson (fast) and the standard library as a fallback."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Response

__all__ = ["dumps", "json_response"]


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # orjson refuses integers beyond 64 bits; JSON has no such limit and stored messages may hold them.
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_response(data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code, headers=headers, media_type="application/json")
