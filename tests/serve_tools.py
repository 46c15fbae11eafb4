"""Values for ``chatkeep serve --tools tests.serve_tools:<name>`` (tests/test_serve_model_server.py): tools, and the
mistakes a user makes naming them."""

from __future__ import annotations

from chatkeep.tools import ToolRegistry, tool


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


def undecorated(order_id: str) -> str:
    """A function someone forgot to decorate with @tool."""
    return order_id


tools = [lookup_order]
registry = ToolRegistry([lookup_order])
twice = [lookup_order, lookup_order]
forgot_the_decorator = [lookup_order, undecorated]
not_tools = {"lookup_order": lookup_order}
