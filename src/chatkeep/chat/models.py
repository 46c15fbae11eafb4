"""Model names → models: ``demo`` and ``openai:<model>`` (any OpenAI-compatible Chat Completions server)."""

from __future__ import annotations

from chatkeep.errors import InvalidInput, ValidationIssue
from chatkeep.providers.base import Model
from chatkeep.providers.demo import DemoModel
from chatkeep.settings import Settings

__all__ = ["resolve_model"]


def resolve_model(name: str, settings: Settings) -> Model:
    """The model called ``name``; ``OPENAI_API_KEY``/``OPENAI_BASE_URL`` configure ``openai:*`` models."""
    if name == "demo":
        return DemoModel(delay_ms=settings.demo_delay_ms)
    if name.startswith("openai:") and len(name) > len("openai:"):
        from chatkeep.providers.openai import OpenAIChatModel

        return OpenAIChatModel(name.removeprefix("openai:"))
    raise InvalidInput(
        [
            ValidationIssue(
                ("model",), f"unknown model {name!r}: use 'demo' or 'openai:<model>' (e.g. openai:gpt-4o-mini)"
            )
        ]
    )
