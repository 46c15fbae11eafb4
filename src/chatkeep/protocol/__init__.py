"""The wire formats chatkeep speaks, as plain data: no database, no web framework.

``messages`` models the Vercel AI SDK ``UIMessage`` (ai 5, 6 and 7) and validates it with precise errors;
``ids`` makes the identifiers (and says which a client may choose); ``strict_json`` and ``limits`` are the
parsing and the size limits that the API and ``chatkeep import`` share; ``stream`` models the UI message stream.
"""

from chatkeep.protocol.ids import generate_id
from chatkeep.protocol.messages import (
    AI_SDK_FORMATS,
    UIMessage,
    UIMessageContent,
    UIPart,
    is_ai_sdk_format,
    parse_ui_message,
    parse_ui_message_content,
)

__all__ = [
    "AI_SDK_FORMATS",
    "UIMessage",
    "UIMessageContent",
    "UIPart",
    "generate_id",
    "is_ai_sdk_format",
    "parse_ui_message",
    "parse_ui_message_content",
]
