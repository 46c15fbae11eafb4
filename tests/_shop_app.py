"""A library-mode chatkeep app for tests that need it in a process of its own (to kill it): ``uvicorn --factory
tests._shop_app:create``. Its model asks to ``refund`` :data:`ORDER` (a tool that needs approval, and appends each
refund it makes, as a JSON line, to the file ``$SHOP_REFUNDS``) and, when the prompt says "stock", also calls
``check_stock``, which never returns. The database is ``$CHATKEEP_DATABASE_URL``, migrated on start."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from chatkeep.api import create_app
from chatkeep.chat.service import ChatService
from chatkeep.protocol.stream import StreamFeatures
from chatkeep.providers.base import ModelEvent, ModelRequest, TextContent, ToolCall, ToolResultContent
from chatkeep.providers.function import FunctionModel
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from chatkeep.tools import Tool, ToolRegistry, tool

ORDER: dict[str, Any] = {"order_id": "o-1", "amount": 10.0}


@tool(needs_approval=True)
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    with open(os.environ["SHOP_REFUNDS"], "a") as log:
        log.write(json.dumps({"order_id": order_id, "amount": amount}) + "\n")
    return f"refunded {amount} on {order_id}"


@tool
async def check_stock(order_id: str) -> str:
    """Check the stock of an order's items (never answers)."""
    await asyncio.Future()
    return "in stock"


async def shop_model(request: ModelRequest) -> AsyncIterator[ModelEvent | str]:
    last = request.messages[-1]
    if last.role == "user":
        if "stock" in "".join(c.text for c in last.content if isinstance(c, TextContent)):
            yield ToolCall("call-stock", "check_stock", {"order_id": "o-1"})
        yield ToolCall("call-refund", "refund", ORDER)
        return
    yield "; ".join(str(c.output) for c in last.content if isinstance(c, ToolResultContent))


def shop_service(store: ChatStore, *, stock: Tool = check_stock) -> ChatService:
    """The shop's chat service (``stock``: another ``check_stock``, for a test that wants to see it start)."""
    tools = ToolRegistry([refund, stock])
    return ChatService(store, FunctionModel(shop_model), tools=tools, features=StreamFeatures.for_clients("6.0.0"))


def create() -> FastAPI:
    settings = Settings()
    store = ChatStore.from_url(settings.database_url)
    return create_app(settings, store=store, chat=shop_service(store))
