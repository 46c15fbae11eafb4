"""The UIMessage model: every part of ai 5, 6 and 7 validates and dumps back key for key; invalid messages are
refused with the exact path of the problem."""

from __future__ import annotations

from typing import Any

import pytest

from chatkeep.errors import InvalidMessage
from chatkeep.protocol import parse_ui_message, parse_ui_message_content
from tests.conftest import load_fixture

VALID: list[dict[str, Any]] = load_fixture("ui_messages.json")
INVALID: list[dict[str, Any]] = load_fixture("invalid_ui_messages.json")


def _location(loc: list[str | int]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_valid_message_round_trips_through_the_model(case: dict[str, Any]) -> None:
    message = parse_ui_message(case["message"])
    assert message.model_dump(exclude_unset=True) == case["message"]


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_message_names_the_offending_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_ui_message(case["message"], loc=("message",))
    locations = [issue.location() for issue in caught.value.issues]
    expected = _location(["message", *case["loc"]])
    assert any(loc == expected or loc.startswith(expected) for loc in locations), (expected, locations)


class TestForbiddenCharacters:
    @pytest.mark.parametrize("bad", ["a\x00b", "\ud800", "x\udfff"])
    def test_nul_and_lone_surrogates_are_refused_anywhere(self, bad: str) -> None:
        content = {"role": "user", "parts": [{"type": "data-x", "data": {"deep": [bad]}}]}
        with pytest.raises(InvalidMessage) as caught:
            parse_ui_message_content(content)
        assert caught.value.issues[0].location() == "parts[0].data.deep[0]"

    def test_keys_are_checked_too(self) -> None:
        with pytest.raises(InvalidMessage):
            parse_ui_message_content({"role": "user", "parts": [{"type": "text", "text": "x", "k\x00": 1}]})


def test_optional_fields_may_not_be_null_but_unknown_typed_ones_may() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_ui_message_content({"role": "user", "parts": [{"type": "text", "text": "x", "state": None}]})
    assert caught.value.issues[0].message == "must be omitted rather than null"
    ok = {"role": "assistant", "metadata": None, "parts": [{"type": "data-x", "data": None}]}
    assert parse_ui_message_content(ok).model_dump(exclude_unset=True) == ok


def test_snake_case_keys_are_unknown_keys_not_aliases() -> None:
    content = {"role": "user", "parts": [{"type": "text", "text": "x", "provider_metadata": {"a": {}}}]}
    part = parse_ui_message_content(content).parts[0]
    assert part.model_extra == {"provider_metadata": {"a": {}}}
