"""The routers: ``threads`` (assistant-ui's thread list), ``history`` (its message history) and ``chat``."""
