"""Which hosts, and which browser pages, the chatkeep service answers.

Without authentication every request acts as the one local user, so anything that can make a browser send one
could read or write that user's chats:

* **Another site's page** can send a "simple" request (``fetch(url, {method: "POST", mode: "no-cors", body})``,
  a form) to a chatkeep on the visitor's machine; it cannot read the answer, but the request does its work. So a
  request that may change something (any method but ``GET``, ``HEAD`` and ``OPTIONS``) from a browser page of another
  origin is refused with a 403. A browser says where a request comes from in ``Sec-Fetch-Site`` (which no page can
  set) and, older ones, in ``Origin``; requests with neither (curl, servers) are not browsers' and pass. Origins in
  ``CHATKEEP_CORS_ORIGINS`` are trusted. This is the algorithm of Go's ``http.CrossOriginProtection``.
* **DNS rebinding**: a site whose name the attacker points at 127.0.0.1 once its page has loaded is the same origin as
  that page, so the browser lets it read what chatkeep answers; only the ``Host`` header, which carries the
  attacker's name, tells it apart. So only these hosts are answered (anything else is a 421): the localhost names
  (``localhost``, ``127.0.0.1``, ``::1``), the address the request reached the server on (the ``--host`` it listens
  on, or, listening on all addresses, the one a client used), and the names in ``CHATKEEP_ALLOWED_HOSTS``.

With authentication (any credential configured, JWTs or API keys: ``Authenticator.enabled``), a request carries its
credentials in a header no other page can make a browser send, so there is no origin check; the host check applies
once ``CHATKEEP_ALLOWED_HOSTS`` is set (as in Django or Rails, it then also guards a deployment against a forged
``Host``).

Only :func:`create_app`'s service installs this (outside everything but the ``nosniff`` header, so it covers the
page, the docs and the API); routers mounted into a host app with ``include_chatkeep`` leave the host app's edge
alone. Starlette's ``TrustedHostMiddleware`` is not used: it answers in plain text rather than chatkeep's JSON
errors, and only to a fixed list of names, not to the address a request arrived on.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from chatkeep.api.errors import error_response

__all__ = ["EdgeGuard"]

#: The names of the machine itself, answered on any port.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_ORIGIN = frozenset({b"same-origin", b"none"})  # "none": the user's own doing (typed, bookmarked)


class EdgeGuard:
    """ASGI middleware: refuse requests for a host not answered here (421), and, when ``trusted_origins`` is not
    ``None``, requests that may change something from another site's browser page (403). See the module docstring.

    ``allowed_hosts``: names answered besides the localhost names and the address a request arrived on, exact or
    ``*.example.com`` (its subdomains); ``["*"]`` answers any host; ``None`` checks no host at all.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Iterable[str] | None, trusted_origins: Iterable[str] | None
    ) -> None:
        self.app = app
        hosts = [host.strip().lower() for host in allowed_hosts or ()]
        self._check_host = allowed_hosts is not None and "*" not in hosts
        self._hosts = LOOPBACK_NAMES | {_host_name(host) or host for host in hosts if not host.startswith("*.")}
        self._host_suffixes = tuple(host[1:] for host in hosts if host.startswith("*."))
        origins = {_origin(origin) for origin in trusted_origins or ()}
        self._check_origin = trusted_origins is not None and "*" not in origins
        self._trusted_origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; chatkeep has no WebSocket routes
            await self.app(scope, receive, send)
            return
        host = origin = site = None
        for name, value in scope["headers"]:
            if name == b"host" and host is None:
                host = value
            elif name == b"origin" and origin is None:
                origin = value
            elif name == b"sec-fetch-site" and site is None:
                site = value
        if self._check_host and host is not None and not self._answers(host, scope.get("server")):
            shown = host.decode("latin-1")[:255]
            response = error_response(
                421,
                "host_not_allowed",
                f"This server does not answer for the host {shown!r}. If it should, add the name to "
                "CHATKEEP_ALLOWED_HOSTS.",
            )
            await response(scope, receive, send)
            return
        if self._check_origin and scope["method"] not in _SAFE_METHODS and self._cross_site(host, origin, site):
            shown = origin.decode("latin-1")[:255] if origin else "another site"
            response = error_response(
                403,
                "cross_site_request",
                f"Without authentication, chatkeep accepts changes only from its own pages, not from {shown}. "
                "If that page is yours, add its origin to CHATKEEP_CORS_ORIGINS.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _answers(self, host: bytes, server: tuple[str, int | None] | None) -> bool:
        name = _host_name(host.decode("latin-1"))
        if name is None:
            return False
        if name in self._hosts or (server is not None and name == server[0].lower()):
            return True
        return name.endswith(self._host_suffixes)

    def _cross_site(self, host: bytes | None, origin: bytes | None, site: bytes | None) -> bool:
        if origin is not None and _origin(origin.decode("latin-1")) in self._trusted_origins:
            return False
        if site is not None:
            return site not in _SAME_ORIGIN
        if origin is None:
            return False  # not a browser's request (or one too old to say): nothing to check it against
        # An older browser's: the page's origin must be this server's (compared without the scheme, which a TLS
        # proxy in front changes).
        _, _, authority = origin.partition(b"://")
        return host is None or authority.lower() != host.lower()


def _host_name(host: str) -> str | None:
    """The name in a ``Host`` header (lowercase, without its port, an IPv6 address without brackets), or ``None``
    when it is not one."""
    host = host.strip().lower()
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return address
    name, colon, port = host.partition(":")
    if not name or (colon and not port.isdigit()):
        return None
    return name.removesuffix(".")


def _origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")
