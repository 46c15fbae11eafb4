"""Configuration, read from the environment (and CLI flags) by pydantic-settings.

Nothing reads the environment at import time: build a :class:`Settings` where you need one and pass it down.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

DEFAULT_DATABASE_URL = "sqlite:///chatkeep.db"


class Settings(BaseSettings):
    """Everything chatkeep can be configured with.

    Environment variables use the ``CHATKEEP_`` prefix; ``DATABASE_URL`` is also read without it, because
    that is the name hosting platforms set.
    """

    model_config = SettingsConfigDict(env_prefix="CHATKEEP_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("CHATKEEP_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="Where threads are kept: postgres://…, postgresql://…, sqlite:///path (default: ./chatkeep.db).",
    )
    model: str = Field(
        default="demo", description="The model that answers in POST /api/chat: 'demo' or 'openai:<model>'."
    )
    tools: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated import paths 'package.module:attribute' of the tools offered to the model: a "
        "@tool function, a list of them or a ToolRegistry. The demo model also has its own made-up get_weather.",
    )
    demo_delay_ms: float = Field(default=15, ge=0, description="The demo model's wait before each chunk.")
    max_steps: int = Field(default=8, ge=1, le=100, description="Model calls per turn (each tool round is one).")
    system_prompt: str | None = Field(default=None, description="Instructions sent to the model before the chat.")
    web_remote_images: Literal["click", "always", "never"] = Field(
        default="click",
        description="Images from other sites in the chat page: loaded on a click, always, or never (blocked by the "
        "page's Content-Security-Policy too).",
    )
    ai_sdk_version: str = Field(
        default="5.0.0",
        pattern=r"^\d+(\.\d+){0,2}$",
        description="The oldest `ai` client version to stay compatible with; newer stream features (finishReason "
        "from 5.0.92, tool approval from 6.0.0) are used only when every client from it on accepts them.",
    )
    auth: Literal["auto", "none", "jwt", "api-keys"] = Field(
        default="auto",
        description="'auto': every credential configured (a JWT secret or JWKS URL, API keys) is accepted and one is "
        "required, and with none configured there is one local user; 'jwt' and 'api-keys': the same, but refuse to "
        "start unless that kind is configured; 'none': one local user, refusing to start if any credential is set.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="Verify HS256 bearer tokens with this secret (the user id is the user claim)."
    )
    jwks_url: str | None = Field(
        default=None, description="Verify RS256/ES256 bearer tokens with the keys published here (cached)."
    )
    jwks_refresh_s: float = Field(
        default=30, ge=0, description="Fetch the JWKS again for an unknown key id at most this often."
    )
    jwt_issuer: str | None = Field(default=None, description="Accept only tokens with this 'iss'.")
    jwt_audience: str | None = Field(default=None, description="Accept only tokens with this 'aud'.")
    jwt_user_claim: str = Field(default="sub", min_length=1, description="The claim that holds the user id.")
    jwt_require_exp: bool = Field(
        default=True, description="Refuse HS256 tokens without 'exp' (tokens from a JWKS always need one)."
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=0,
        description="Failed authentications (a wrong signature, key or API key, a malformed token) per client "
        "address per minute (0: no limit); over it, every request from that address needing authentication is a "
        "429 until the minute ends. Shared through Redis if set.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated 'sha256:<hex>' hashes of server-to-server API keys (chatkeep keys new).",
    )
    api_key_user_header: str = Field(
        default="x-chatkeep-user", description="The header naming the user an API key acts for."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins of browser apps allowed to call the API."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names ('*.example.com' for its subdomains, '*' for any) the service answers "
        "to, besides localhost and the address it is reached on; checked in every mode once set, and always without "
        "authentication.",
    )
    allow_unauthenticated: bool = Field(
        default=False, description="Let 'serve' listen beyond loopback without authentication (you know why)."
    )
    local_user_id: str = Field(default="local", description="The one user when authentication is off.")
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CHATKEEP_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis for running several chatkeep processes: wakes readers of a stream in other processes "
        "at once (without it they poll the database).",
    )
    redis_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="Longest wait for one Redis command: a Redis slower than this counts as unavailable, and "
        "chatkeep runs without it (as if it were not configured) until it answers again.",
    )
    redis_connect_timeout_s: float = Field(default=1.0, gt=0, description="Longest wait for a connection to Redis.")
    model_timeout_s: float = Field(default=300, gt=0, description="A model silent for this long fails the turn.")
    requests_per_minute: int = Field(
        default=600, ge=0, description="Requests per user per minute (0: no limit); shared through Redis if set."
    )
    max_concurrent_streams: int = Field(
        default=4, ge=0, description="Replies one user may have generating at once (0: no limit)."
    )
    shutdown_grace_s: float = Field(
        default=30,
        ge=0,
        description="On SIGTERM, replies still being generated may finish for this long; then they are stopped, "
        "stored as interrupted, and the process exits.",
    )
    auto_title: bool = Field(
        default=True,
        description="Title an untitled thread after its first reply (in the background, once; a client's title wins).",
    )
    max_messages_per_request: int = Field(default=1000, ge=1, description="Messages in one POST /api/chat.")
    max_parts_per_message: int = Field(default=1000, ge=1, description="Parts in one message.")
    max_text_chars: int = Field(default=4_000_000, ge=1, description="Characters in one text or reasoning part.")
    max_title_chars: int = Field(default=1000, ge=1, description="Characters in a thread's title.")
    max_attachment_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1, description="Size of one file part sent inline as a data: URL."
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description="Size of a request's line and headers together in 'chatkeep serve'; larger: 431 before the rest "
        "is read.",
    )
    db_pool_size: int = Field(default=20, ge=1, description="Connections kept open to PostgreSQL.")
    migrate_on_start: bool = Field(default=True, description="Bring the schema up to date when the service starts.")
    tune_gc: bool = Field(
        default=True,
        description="'chatkeep serve' only: freeze what start-up built out of the garbage collector's reach and "
        "collect the young generation every 50,000 allocations (the library never changes the process's collector).",
    )

    @field_validator("tools", "api_keys", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
