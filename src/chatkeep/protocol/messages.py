"""The Vercel AI SDK ``UIMessage`` and its parts, for ai 5, 6 and 7.

Mirrors ``packages/ai/src/ui/ui-messages.ts`` of ``ai@5.0.277``, ``ai@6.0.322`` and ``ai@7.0.173`` (see
``shared/reference/ai-sdk-protocol.md`` §1 and ``ai-sdk-v7-delta.md`` §1). One model per part type, combined
in :data:`UIPart`, a union discriminated on ``type`` (``tool-*`` and ``data-*`` are prefixes).

Invariants the validation gives every accepted message:

* Unknown keys are **kept** (on the message, on every part, inside tool approvals), so a message written by a
  newer SDK comes back with every field it had. ``model_dump(by_alias=True, exclude_unset=True)`` returns the
  input key for key; validation is strict, so nothing is coerced on the way in.
* Optional fields that the SDK types as ``string``/``boolean``/object must be omitted rather than ``null``
  (as zod's ``.optional()`` demands); only the ``unknown``-typed keys (``input``, ``output``, ``rawInput``,
  ``data``, ``metadata``, approval descriptors) may be ``null``.
* Tool parts carry the fields their ``state`` requires (e.g. ``output`` in ``output-available``).
* No string anywhere in the message holds a NUL character or a lone surrogate (neither can be stored).

Errors are :class:`chatkeep.errors.InvalidMessage` with the path of each problem, such as
``parts[2].toolCallId: Field required``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from chatkeep.errors import InvalidMessage, ValidationIssue

__all__ = [
    "content_of",
    "AI_SDK_FORMATS",
    "TOOL_STATES",
    "CustomUIPart",
    "DataUIPart",
    "DynamicToolUIPart",
    "FileUIPart",
    "NoNull",
    "ReasoningFileUIPart",
    "ReasoningUIPart",
    "SourceDocumentUIPart",
    "SourceUrlUIPart",
    "StepStartUIPart",
    "SteeringMessageUIPart",
    "TextUIPart",
    "ToolApproval",
    "ToolUIPart",
    "UIMessage",
    "UIMessageContent",
    "UIPart",
    "find_forbidden_characters",
    "is_ai_sdk_format",
    "parse_ui_message",
    "parse_ui_message_content",
]

#: The ``format`` strings whose ``content`` is an AI SDK UIMessage (without its id). assistant-ui writes
#: ``ai-sdk/v6`` for ai 6 *and* 7 and ``ai-sdk/v5`` for ai 5; any other format is stored verbatim.
AI_SDK_FORMATS: frozenset[str] = frozenset({"ai-sdk/v5", "ai-sdk/v6"})

TOOL_STATES = (
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
)
ToolState: TypeAlias = Literal[
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
]


def content_of(message: Mapping[str, Any]) -> dict[str, Any]:
    """A UIMessage's content: everything but its ``id`` (what a store keeps under the id)."""
    return {key: value for key, value in message.items() if key != "id"}


def is_ai_sdk_format(fmt: str) -> bool:
    """Whether messages of this format are AI SDK UIMessages (stored as typed part rows)."""
    return fmt in AI_SDK_FORMATS


def _no_null(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must be omitted rather than null")
    return handler(value)


NoNull = WrapValidator(_no_null)
#: ``Record<string, Record<string, JSONValue>>``
ProviderMetadata: TypeAlias = dict[str, dict[str, JsonValue]]
OptStr: TypeAlias = Annotated[str | None, NoNull]
OptBool: TypeAlias = Annotated[bool | None, NoNull]
OptProviderMetadata: TypeAlias = Annotated[ProviderMetadata | None, NoNull]


class _UIModel(BaseModel):
    """camelCase on the wire, unknown keys kept, nothing coerced.

    Only the camelCase names are accepted, also from Python (``TextUIPart(type="text", text="hi",
    providerMetadata=...)``): a snake_case key is an unknown key and is kept verbatim, so a message never changes
    shape on its way through.
    """

    model_config = ConfigDict(
        extra="allow",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        strict=True,
    )


NonNegativeInt: TypeAlias = Annotated[int, Field(ge=0)]
#: The longest part ``type`` (``tool-<name>``, ``data-<name>``): it is stored in a column of this many characters.
MAX_PART_TYPE_LENGTH = 255


class Citation(_UIModel):
    """ai 7.0.138+: a span of a text part and the source (url or document) it cites."""

    source: dict[str, JsonValue]
    start_index: Annotated[NonNegativeInt | None, NoNull] = None
    end_index: Annotated[NonNegativeInt | None, NoNull] = None
    cited_text: OptStr = None


class TextUIPart(_UIModel):
    type: Literal["text"]
    text: str
    state: Annotated[Literal["streaming", "done"] | None, NoNull] = None
    provider_metadata: OptProviderMetadata = None
    citations: Annotated[list[Citation] | None, NoNull] = None


class ReasoningUIPart(_UIModel):
    type: Literal["reasoning"]
    text: str
    state: Annotated[Literal["streaming", "done"] | None, NoNull] = None
    provider_metadata: OptProviderMetadata = None
    id: OptStr = None


class SourceUrlUIPart(_UIModel):
    type: Literal["source-url"]
    source_id: str
    url: str
    title: OptStr = None
    provider_metadata: OptProviderMetadata = None


class SourceDocumentUIPart(_UIModel):
    type: Literal["source-document"]
    source_id: str
    media_type: str
    title: str
    filename: OptStr = None
    provider_metadata: OptProviderMetadata = None


class FileUIPart(_UIModel):
    type: Literal["file"]
    media_type: str
    url: str
    filename: OptStr = None
    provider_metadata: OptProviderMetadata = None
    #: ai 7: provider name → provider file id
    provider_reference: Annotated[dict[str, str] | None, NoNull] = None


class StepStartUIPart(_UIModel):
    type: Literal["step-start"]


class DataUIPart(_UIModel):
    """``data-<name>``: ``data`` is required (it may be ``null``)."""

    type: Annotated[str, Field(pattern=r"^data-.+", max_length=MAX_PART_TYPE_LENGTH)]
    id: OptStr = None
    data: JsonValue


class ToolApproval(_UIModel):
    """``approval`` of a tool part (ai 6+): the request, then the response."""

    id: str
    approved: OptBool = None
    reason: OptStr = None
    signature: OptStr = None
    descriptor: JsonValue = None
    input_schema_input: JsonValue = None
    #: ai 7.0.82+: the policy's reason for asking
    request_reason: OptStr = None
    #: ai 7: decided by a policy rather than a person
    is_automatic: OptBool = None


class _ToolPart(_UIModel):
    tool_call_id: str
    state: ToolState
    input: JsonValue = None
    output: JsonValue = None
    error_text: OptStr = None
    provider_executed: OptBool = None
    title: OptStr = None
    raw_input: JsonValue = None
    preliminary: OptBool = None
    call_provider_metadata: OptProviderMetadata = None
    result_provider_metadata: OptProviderMetadata = None
    approval: Annotated[ToolApproval | None, NoNull] = None
    tool_metadata: Annotated[dict[str, JsonValue] | None, NoNull] = None
    input_encoding: Annotated[Literal["json", "text"] | None, NoNull] = None


class ToolUIPart(_ToolPart):
    """A static tool: ``tool-<name>``; the name is everything after the first dash."""

    type: Annotated[str, Field(pattern=r"^tool-.+", max_length=MAX_PART_TYPE_LENGTH)]

    @property
    def tool_name(self) -> str:
        return self.type.split("-", 1)[1]


class DynamicToolUIPart(_ToolPart):
    type: Literal["dynamic-tool"]
    tool_name: str
    #: late ai 5 / 6 patches: ``false`` marks a static tool that is no longer registered
    dynamic: Annotated[Literal[False] | None, NoNull] = None


class CustomUIPart(_UIModel):
    """ai 7: opaque provider content, ``kind`` is ``{provider}.{type}``."""

    type: Literal["custom"]
    kind: str
    provider_metadata: OptProviderMetadata = None


class ReasoningFileUIPart(_UIModel):
    """ai 7: a file produced inside reasoning."""

    type: Literal["reasoning-file"]
    media_type: str
    url: str
    provider_metadata: OptProviderMetadata = None


def _steering_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    return kind if kind in ("text", "file") else None


SteeringPart: TypeAlias = Annotated[
    Annotated[TextUIPart, Tag("text")] | Annotated[FileUIPart, Tag("file")],
    Discriminator(
        _steering_tag,
        custom_error_type="invalid_part_type",
        custom_error_message="a steering message holds only 'text' and 'file' parts",
    ),
]


class SteeringMessageUIPart(_UIModel):
    """ai 7.0.163+ (experimental): a user message injected into a running generation."""

    type: Literal["steering-message"]
    id: str
    parts: list[SteeringPart]


_FIXED_PART_TYPES = frozenset(
    {
        "text",
        "reasoning",
        "source-url",
        "source-document",
        "file",
        "step-start",
        "dynamic-tool",
        "custom",
        "reasoning-file",
        "steering-message",
    }
)


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    if kind in _FIXED_PART_TYPES:
        return kind
    if kind.startswith("tool-") and len(kind) > 5:
        return "tool"
    if kind.startswith("data-") and len(kind) > 5:
        return "data"
    return None


UIPart: TypeAlias = Annotated[
    Annotated[TextUIPart, Tag("text")]
    | Annotated[ReasoningUIPart, Tag("reasoning")]
    | Annotated[SourceUrlUIPart, Tag("source-url")]
    | Annotated[SourceDocumentUIPart, Tag("source-document")]
    | Annotated[FileUIPart, Tag("file")]
    | Annotated[StepStartUIPart, Tag("step-start")]
    | Annotated[DynamicToolUIPart, Tag("dynamic-tool")]
    | Annotated[ToolUIPart, Tag("tool")]
    | Annotated[DataUIPart, Tag("data")]
    | Annotated[CustomUIPart, Tag("custom")]
    | Annotated[ReasoningFileUIPart, Tag("reasoning-file")]
    | Annotated[SteeringMessageUIPart, Tag("steering-message")],
    Discriminator(
        _part_tag,
        custom_error_type="invalid_part_type",
        custom_error_message=(
            "unknown part type; expected one of text, reasoning, file, source-url, source-document, step-start, "
            "dynamic-tool, custom, reasoning-file, steering-message, or a type starting with 'tool-' or 'data-'"
        ),
    ),
]


class UIMessageContent(_UIModel):
    """A UIMessage without its ``id``: what assistant-ui's ``ai-sdk/v6`` format stores as ``content``."""

    role: Literal["system", "user", "assistant"]
    parts: list[UIPart]
    metadata: JsonValue = None


class UIMessage(UIMessageContent):
    """``{id, role, metadata?, parts}``: the message ``useChat`` holds."""

    id: str


# Per tool state (the SDK validates each state with its own schema, ui-messages.ts): the fields it requires,
# the fields it forbids, and what ``approval.approved`` must be (absent, any boolean, or one value).
_TOOL_STATE_REQUIRES: dict[str, tuple[str, ...]] = {
    "input-streaming": (),
    "input-available": ("input",),
    "approval-requested": ("input", "approval"),
    "approval-responded": ("input", "approval"),
    "output-available": ("input", "output"),
    "output-error": ("errorText",),
    "output-denied": ("input", "approval"),
}
_TOOL_STATE_FORBIDS: dict[str, tuple[str, ...]] = {
    "input-streaming": ("output", "errorText", "approval"),
    "input-available": ("output", "errorText", "approval"),
    "approval-requested": ("output", "errorText"),
    "approval-responded": ("output", "errorText"),
    "output-available": ("errorText",),
    "output-error": ("output",),
    "output-denied": ("output", "errorText"),
}
_ABSENT = object()
_APPROVED: dict[str, object] = {
    "approval-requested": _ABSENT,
    "approval-responded": bool,
    "output-available": True,
    "output-error": True,
    "output-denied": False,
}

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


def find_forbidden_characters(value: Any, loc: tuple[str | int, ...] = ()) -> list[ValidationIssue]:
    """Every string (key or value) in a JSON value that holds a NUL or a lone surrogate.

    Neither can be stored: PostgreSQL rejects NUL in text and JSON, and a lone surrogate cannot be encoded
    as UTF-8. Both are refused up front so that a write never fails half way.
    """
    issues: list[ValidationIssue] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _FORBIDDEN.search(item):
                issues.append(_forbidden_issue(where))
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str) and _FORBIDDEN.search(key):
                    issues.append(_forbidden_issue(where))
                stack.append((sub, (*where, key)))
        elif isinstance(item, list | tuple):
            stack.extend((sub, (*where, i)) for i, sub in enumerate(item))
    issues.sort(key=lambda issue: tuple(str(x) for x in issue.loc))
    return issues


def _forbidden_issue(loc: tuple[str | int, ...]) -> ValidationIssue:
    return ValidationIssue(
        loc, "text may not contain NUL characters or unpaired surrogates", type="forbidden_character"
    )


_CONTENT_ADAPTER: TypeAdapter[UIMessageContent] = TypeAdapter(UIMessageContent)
_MESSAGE_ADAPTER: TypeAdapter[UIMessage] = TypeAdapter(UIMessage)


def parse_ui_message_content(content: Any, *, loc: Sequence[str | int] = ()) -> UIMessageContent:
    """Validate the ``content`` of an ``ai-sdk/v5``/``ai-sdk/v6`` row (a UIMessage without ``id``).

    Raises :class:`InvalidMessage` whose issues are located under ``loc``.
    """
    return _parse(_CONTENT_ADAPTER, content, tuple(loc))


def parse_ui_message(message: Any, *, loc: Sequence[str | int] = ()) -> UIMessage:
    """Validate a whole UIMessage (with ``id``), e.g. one element of ``useChat``'s ``messages``."""
    return _parse(_MESSAGE_ADAPTER, message, tuple(loc))


_M = TypeVar("_M", bound=UIMessageContent)


def _parse(adapter: TypeAdapter[_M], value: Any, loc: tuple[str | int, ...]) -> _M:
    issues = find_forbidden_characters(value, loc)
    if issues:
        raise InvalidMessage(issues)
    try:
        parsed = adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidMessage([_issue_from_pydantic(err, loc) for err in exc.errors()]) from None
    semantic = _semantic_issues(parsed, loc)
    if semantic:
        raise InvalidMessage(semantic)
    return parsed


def _issue_from_pydantic(err: Any, loc: tuple[str | int, ...]) -> ValidationIssue:
    # Drop the union tags pydantic adds to locations ("parts", 0, "tool", "toolCallId"): they are not keys.
    path: list[str | int] = list(loc)
    raw = tuple(err["loc"])
    i = 0
    while i < len(raw):
        item = raw[i]
        path.append(item)
        if item == "parts" and i + 2 < len(raw) and isinstance(raw[i + 1], int) and isinstance(raw[i + 2], str):
            nxt = raw[i + 2]
            if nxt in _FIXED_PART_TYPES or nxt in ("tool", "data"):
                path.append(raw[i + 1])
                i += 3
                continue
        i += 1
    return ValidationIssue(tuple(path), str(err["msg"]), type=str(err["type"]))


def _semantic_issues(message: UIMessageContent, loc: tuple[str | int, ...]) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    if not message.parts and message.role != "assistant":
        issues.append(
            ValidationIssue((*loc, "parts"), "a user or system message must contain at least one part", "too_short")
        )
    for index, part in enumerate(message.parts):
        if isinstance(part, _ToolPart):
            issues.extend(_tool_state_issues(part, (*loc, "parts", index)))
    return issues


def _tool_state_issues(part: _ToolPart, loc: tuple[str | int, ...]) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    present = part.model_fields_set
    state = part.state
    for field in _TOOL_STATE_REQUIRES[state]:
        if _snake(field) not in present:
            issues.append(ValidationIssue((*loc, field), f"Field required when state is {state!r}", "missing"))
    for field in _TOOL_STATE_FORBIDS[state]:
        if _snake(field) in present:
            issues.append(ValidationIssue((*loc, field), f"not allowed when state is {state!r}", "extra_forbidden"))
    if part.approval is not None and state in _APPROVED:
        expected, approved = _APPROVED[state], part.approval.approved
        if expected is _ABSENT and approved is not None:
            problem = "not allowed before the approval is answered"
        elif expected is bool and approved is None:
            problem = f"Field required when state is {state!r}"
        elif isinstance(expected, bool) and approved is not expected:
            problem = f"must be {str(expected).lower()} when state is {state!r}"
        else:
            problem = ""
        if problem:
            issues.append(ValidationIssue((*loc, "approval", "approved"), problem, "invalid_approval"))
    return issues


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
