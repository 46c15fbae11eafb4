"""Tools a model may call: Python functions with a pydantic input schema.

A :class:`Tool` with ``execute`` runs on the server, inside the chat loop; one without is a **client-side** tool:
the stream ends with the call ``input-available`` and the client (``useChat``'s ``onToolCall`` +
``addToolResult``) sends the result back, which continues the same assistant message.

Write one with the :func:`tool` decorator::

    @tool
    async def get_weather(city: str) -> dict[str, object]:
        \"\"\"The current weather in a city.\"\"\"
        ...

The input schema comes from the parameters (or a single pydantic model parameter); the description from the
docstring. Invalid input from a model is reported back to it as a tool error, never raised.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_type_hints, overload

from pydantic import BaseModel, ValidationError, create_model

from chatkeep.errors import InvalidConfiguration
from chatkeep.providers.base import ToolSpec

__all__ = ["Tool", "ToolError", "ToolRegistry", "builtin_tools", "get_weather", "load_tools", "tool"]


class ToolError(Exception):
    """Raise from a tool to report a failure to the model (and the user) with this message."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    #: ``None`` for a client-side tool
    execute: Callable[[BaseModel], Awaitable[Any]] | None = None
    #: ask the user before each call (ai 6+ clients: ``addToolApprovalResponse``)
    needs_approval: bool = False

    def spec(self) -> ToolSpec:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(self.name, self.description, schema)

    def parse_input(self, value: Any) -> BaseModel:
        """The validated input; raises :class:`ToolError` with a readable reason."""
        try:
            return self.input_model.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolError(f"Invalid input for tool {self.name}: {problems}") from None

    async def run(self, value: Any) -> Any:
        """Validate the input and run the tool (server-side tools only)."""
        if self.execute is None:
            raise ToolError(f"Tool {self.name} runs on the client.")
        output = await self.execute(self.parse_input(value))
        return output.model_dump(mode="json") if isinstance(output, BaseModel) else output


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, client: bool = False, needs_approval: bool = False
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    client: bool = False,
    needs_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` from a function (sync or async). ``client=True``: the function only declares the
    schema; the call is answered by the client. ``needs_approval=True``: the user approves each call first."""

    def build(func: Callable[..., Any]) -> Tool:
        try:
            hints = get_type_hints(func)
        except NameError as exc:
            raise TypeError(
                f"tool {func.__name__}: cannot read its type hints ({exc}); define the types it uses at module level"
            ) from exc
        params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
        single = (
            len(params) == 1
            and isinstance(hints.get(params[0].name), type)
            and issubclass(hints[params[0].name], BaseModel)
        )
        if single:
            input_model = cast(type[BaseModel], hints[params[0].name])
        else:
            fields: dict[str, Any] = {
                p.name: (hints.get(p.name, Any), ... if p.default is inspect.Parameter.empty else p.default)
                for p in params
            }
            input_model = create_model(f"{func.__name__}_input", **fields)

        async def execute(value: BaseModel) -> Any:
            result = func(value) if single else func(**value.model_dump())
            return await result if inspect.isawaitable(result) else result

        return Tool(
            name=name or func.__name__,
            description=description or inspect.getdoc(func) or "",
            input_model=input_model,
            execute=None if client else execute,
            needs_approval=needs_approval,
        )

    return build(fn) if fn is not None else build


class ToolRegistry:
    """The tools of one chat service, by name."""

    def __init__(self, tools: Sequence[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        #: the specs, built once (a JSON Schema from pydantic costs about a millisecond per tool and turn)
        self._specs: tuple[ToolSpec, ...] | None = None
        for item in tools:
            self.add(item)

    def add(self, item: Tool) -> None:
        if item.name in self._tools:
            raise ValueError(f"two tools are named {item.name!r}")
        self._tools[item.name] = item
        self._specs = None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> list[ToolSpec]:
        if self._specs is None:
            self._specs = tuple(t.spec() for t in self._tools.values())
        return list(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def as_mapping(self) -> Mapping[str, Tool]:
        return dict(self._tools)


_CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy")


@tool
def get_weather(city: str) -> dict[str, Any]:
    """Get the current weather in a city (a deterministic stand-in: the same city always gets the same weather)."""
    digest = hashlib.sha256(city.strip().lower().encode()).digest()
    return {"city": city, "temperatureC": digest[0] % 35 - 5, "condition": _CONDITIONS[digest[1] % len(_CONDITIONS)]}


def builtin_tools() -> list[Tool]:
    """The ``demo`` model's tools: ``get_weather``, whose weather is made up. Never offered to a real model."""
    return [get_weather]


def load_tools(paths: Sequence[str]) -> list[Tool]:
    """The tools at ``paths`` (``CHATKEEP_TOOLS``, ``chatkeep serve --tools``), in order. Each path is
    ``package.module:attribute``, naming a :class:`Tool` (a ``@tool`` function), a sequence of them or a
    :class:`ToolRegistry`; the module is imported from ``sys.path`` as it is (this does not change it).

    Raises :class:`~chatkeep.errors.InvalidConfiguration` naming the path when one does not import, is not tools,
    or gives a tool a name that another tool already has.
    """
    found: dict[str, str] = {}  # tool name → the path that gave it
    tools: list[Tool] = []
    for path in paths:
        for item in _tools_at(path):
            if item.name in found:
                raise InvalidConfiguration(
                    f"tools {path!r}: two tools are named {item.name!r}"
                    if found[item.name] == path
                    else f"tools {path!r}: a tool named {item.name!r} comes from {found[item.name]!r} already"
                )
            found[item.name] = path
            tools.append(item)
    return tools


def _tools_at(path: str) -> list[Tool]:
    # Not pkgutil.resolve_name: it cannot tell a module that does not import from one without the attribute,
    # which the user fixes in different places.
    module_name, colon, attribute = path.partition(":")
    if not (colon and module_name and attribute):
        raise InvalidConfiguration(f"tools {path!r}: expected an import path 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the module's own code raises while it is imported
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if isinstance(exc, ModuleNotFoundError) and exc.name and f"{module_name}.".startswith(f"{exc.name}."):
            reason += " (run chatkeep from the folder that holds it, or install it)"
        raise InvalidConfiguration(f"tools {path!r}: cannot import {module_name!r}: {reason}") from exc
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise InvalidConfiguration(f"tools {path!r}: module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, ToolRegistry):
        return list(value.as_mapping().values())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, item in enumerate(value):
            if not isinstance(item, Tool):
                raise InvalidConfiguration(f"tools {path!r}: item {index} is not a tool: {_what(item)}")
        return list(value)
    raise InvalidConfiguration(
        f"tools {path!r}: expected a @tool function, a list of them or a ToolRegistry, not {_what(value)}"
    )


def _what(value: object) -> str:
    if inspect.isroutine(value):
        return f"{value.__name__}, a plain function (decorate it with @tool from chatkeep.tools)"
    return f"a value of type {type(value).__name__}"
