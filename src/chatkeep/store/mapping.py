"""UIMessage parts ⇄ ``parts`` rows, and message-level fields ⇄ ``messages`` columns.

The mapping is table-driven: each part family has a list of ``(json key, column)`` pairs. Going in, a key of
the family goes to its column, any other key goes to ``extra``; going out, the columns that hold a value and the
keys a part of that type and state must have are emitted, then ``extra`` is merged back. So for every valid part
``row_to_part(part_to_row(p)) == p`` key for key, including keys no SDK had when this was written.

A JSON ``null`` needs care because SQL ``NULL`` already means "no such key": a ``null`` under a key the part
must have (``data``, a tool's ``input``/``output`` in the states that require them) is stored as JSON
``null`` in its column; a ``null`` under an optional key is kept in ``extra``.

Input is assumed valid (see :mod:`chatkeep.protocol.messages`); this module only moves data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON

__all__ = [
    "PART_COLUMNS",
    "PART_READ_COLUMNS",
    "content_to_message_columns",
    "message_content",
    "part_reader",
    "part_to_row",
    "row_to_part",
]


@dataclass(frozen=True, slots=True)
class _Field:
    key: str
    column: str


def _fields(*pairs: tuple[str, str]) -> dict[str, _Field]:
    return {key: _Field(key, column) for key, column in pairs}


_PROVIDER_METADATA = ("providerMetadata", "provider_metadata")

_TOOL_COMMON = (
    ("toolCallId", "tool_call_id"),
    ("state", "tool_state"),
    ("input", "tool_input"),
    ("output", "tool_output"),
    ("errorText", "tool_error_text"),
    ("providerExecuted", "tool_provider_executed"),
    ("title", "tool_title"),
    ("rawInput", "tool_raw_input"),
    ("preliminary", "tool_preliminary"),
    ("approval", "tool_approval"),
    ("callProviderMetadata", "tool_call_provider_metadata"),
    ("resultProviderMetadata", "tool_result_provider_metadata"),
    ("toolMetadata", "tool_metadata"),
)

_FAMILIES: dict[str, dict[str, _Field]] = {
    "text": _fields(("text", "text_text"), ("state", "text_state"), _PROVIDER_METADATA),
    "reasoning": _fields(
        ("text", "reasoning_text"), ("state", "reasoning_state"), ("id", "reasoning_id"), _PROVIDER_METADATA
    ),
    "file": _fields(
        ("mediaType", "file_media_type"), ("url", "file_url"), ("filename", "file_filename"), _PROVIDER_METADATA
    ),
    "reasoning-file": _fields(("mediaType", "file_media_type"), ("url", "file_url"), _PROVIDER_METADATA),
    "source-url": _fields(
        ("sourceId", "source_url_source_id"),
        ("url", "source_url_url"),
        ("title", "source_url_title"),
        _PROVIDER_METADATA,
    ),
    "source-document": _fields(
        ("sourceId", "source_document_source_id"),
        ("mediaType", "source_document_media_type"),
        ("title", "source_document_title"),
        ("filename", "source_document_filename"),
        _PROVIDER_METADATA,
    ),
    "step-start": {},
    "tool": _fields(*_TOOL_COMMON),
    "dynamic-tool": _fields(("toolName", "tool_name"), *_TOOL_COMMON),
    "data": _fields(("id", "data_id"), ("data", "data_value")),
    "custom": _fields(("kind", "custom_kind"), _PROVIDER_METADATA),
    "steering-message": _fields(("id", "steering_id"), ("parts", "steering_parts")),
}

#: Every column a part row has, so rows for one ``executemany`` all carry the same keys.
PART_COLUMNS: tuple[str, ...] = (
    "type",
    "part_order",
    *sorted({f.column for family in _FAMILIES.values() for f in family.values()} | {"tool_name", "data_name"}),
    "extra",
)
_EMPTY_ROW: dict[str, Any] = dict.fromkeys(PART_COLUMNS)
#: The columns a part is read from (:func:`row_to_part`, :func:`part_reader`): ``type``, every column of a family,
#: ``extra``. ``part_order`` only orders and ``data_name`` repeats what ``type`` says.
PART_READ_COLUMNS: tuple[str, ...] = (
    "type",
    *sorted({f.column for family in _FAMILIES.values() for f in family.values()}),
    "extra",
)

# Keys that must be present for a tool part in a given state (and so are emitted even when JSON null).
_TOOL_REQUIRED_JSON: dict[str, frozenset[str]] = {
    "input-streaming": frozenset(),
    "input-available": frozenset({"input"}),
    "approval-requested": frozenset({"input", "approval"}),
    "approval-responded": frozenset({"input", "approval"}),
    "output-available": frozenset({"input", "output"}),
    "output-error": frozenset(),
    "output-denied": frozenset({"input", "approval"}),
}
_ALWAYS_REQUIRED_JSON: dict[str, frozenset[str]] = {
    "data": frozenset({"data"}),
    "steering-message": frozenset({"parts"}),
}


def _family(part_type: str) -> str:
    if part_type in _FAMILIES:
        return part_type
    if part_type.startswith("tool-"):
        return "tool"
    if part_type.startswith("data-"):
        return "data"
    raise ValueError(f"unknown part type {part_type!r}")


def _required_json(family: str, state: Any) -> frozenset[str]:
    if family in ("tool", "dynamic-tool"):
        return _TOOL_REQUIRED_JSON.get(state, frozenset())
    return _ALWAYS_REQUIRED_JSON.get(family, frozenset())


def part_to_row(part: Mapping[str, Any], part_order: int) -> dict[str, Any]:
    """The column values of one part (every column in :data:`PART_COLUMNS`, unused ones ``None``)."""
    part_type: str = part["type"]
    family = _family(part_type)
    fields = _FAMILIES[family]
    required = _required_json(family, part.get("state"))
    row = dict(_EMPTY_ROW)
    row["type"] = part_type
    row["part_order"] = part_order
    if family == "tool":
        row["tool_name"] = part_type.split("-", 1)[1]
    elif family == "data":
        row["data_name"] = part_type.split("-", 1)[1]
    extra: dict[str, Any] = {}
    for key, value in part.items():
        if key == "type":
            continue
        spec = fields.get(key)
        if spec is None:
            extra[key] = value
        elif value is None:
            if key in required:
                row[spec.column] = JSON.NULL
            else:
                extra[key] = None
        else:
            row[spec.column] = value
    if extra:
        row["extra"] = extra
    return row


#: How a part of one family (and, for tools, one state) is read from a row: ``(key, position, kept when null)``
#: for each of the family's fields, in the family's order.
_Plan = tuple[tuple[str, int, bool], ...]
#: The family's plan and, for tool families, the plan of each known state (the family's serves unknown states).
_FamilyPlan = tuple[_Plan, dict[Any, _Plan] | None]
#: Bound on the part types a reader remembers (tool and data part types embed user-chosen names).
_MAX_CACHED_TYPES = 1024


def part_reader(columns: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function from a part row read by position (``columns`` names each position and must hold every one of
    :data:`PART_READ_COLUMNS`) to its part.

    The part comes back key for key as :func:`part_to_row` took it. This is the hot loop of loading a thread, so
    the work per family is done once here: each family's fields become ``(key, position, kept when null)`` and
    each row costs one dict lookup of its type, then one index per field of its family (columns of other
    families are not looked at).
    """
    position = {name: index for index, name in enumerate(columns)}
    type_at, state_at, extra_at = position["type"], position["tool_state"], position["extra"]

    def plan(family: str, required: frozenset[str]) -> _Plan:
        return tuple((f.key, position[f.column], f.key in required) for f in _FAMILIES[family].values())

    families: dict[str, _FamilyPlan] = {}
    for family in _FAMILIES:
        if family in ("tool", "dynamic-tool"):
            states = {state: plan(family, required) for state, required in _TOOL_REQUIRED_JSON.items()}
            families[family] = (plan(family, frozenset()), states)
        else:
            families[family] = (plan(family, _ALWAYS_REQUIRED_JSON.get(family, frozenset())), None)
    by_type: dict[str, _FamilyPlan] = dict(families)

    def read(row: Sequence[Any]) -> dict[str, Any]:
        part_type: str = row[type_at]
        found = by_type.get(part_type)
        if found is None:
            found = families[_family(part_type)]
            if len(by_type) < _MAX_CACHED_TYPES:
                by_type[part_type] = found
        fields, states = found
        if states is not None:
            fields = states.get(row[state_at], fields)
        part: dict[str, Any] = {"type": part_type}
        for key, at, keep_null in fields:
            value = row[at]
            if value is not None or keep_null:
                part[key] = value
        extra = row[extra_at]
        if extra:
            part.update(extra)
        return part

    return read


_read_by_name = part_reader(PART_READ_COLUMNS)


def row_to_part(row: Mapping[str, Any]) -> dict[str, Any]:
    """The part a row (column name → value) holds, key for key as it was written (see :func:`part_reader`)."""
    return _read_by_name([row[column] for column in PART_READ_COLUMNS])


_MESSAGE_KEYS = ("role", "parts", "metadata")


def content_to_message_columns(content: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split an AI SDK message ``content`` into ``messages`` columns and part rows (``thread_id`` and
    ``message_id`` are left to the caller)."""
    metadata = content.get("metadata")
    extra = {key: value for key, value in content.items() if key not in _MESSAGE_KEYS}
    if "metadata" in content and metadata is None:
        extra["metadata"] = None
    columns = {"role": content["role"], "metadata_": metadata, "extra": extra or None, "content": None}
    rows = [part_to_row(part, order) for order, part in enumerate(content["parts"])]
    return columns, rows


def message_content(
    role: str, metadata: Any, extra: Mapping[str, Any] | None, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``content`` stored as ``role``/``metadata``/``extra`` and the message's ``parts`` (already read)."""
    content: dict[str, Any] = {"role": role}
    if metadata is not None:
        content["metadata"] = metadata
    content["parts"] = parts
    if extra:
        content.update(extra)
    return content
