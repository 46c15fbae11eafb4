"""Model names → models: ``demo`` and ``openai:<model>`` (any OpenAI-compatible Chat Completions server), and the
tools the configured model is offered."""

from __future__ import annotations

from chatkeep.errors import InvalidInput, ValidationIssue
from chatkeep.providers.base import Model
from chatkeep.providers.demo import DemoModel
from chatkeep.settings import Settings
from chatkeep.tools import ToolRegistry, builtin_tools, load_tools

__all__ = ["resolve_model", "resolve_tools"]


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


def resolve_tools(settings: Settings) -> ToolRegistry:
    """The tools offered to ``settings.model``: those ``settings.tools`` names (:func:`~chatkeep.tools.load_tools`)
    and, for the ``demo`` model only, its built-in made-up ``get_weather``, unless one of those has the name already
    (so a tool of your own can be tried offline with the demo model). A real model never sees a made-up tool."""
    registry = ToolRegistry(load_tools(settings.tools))
    if settings.model == "demo":
        for item in builtin_tools():
            if item.name not in registry:
                registry.add(item)
    return registry
