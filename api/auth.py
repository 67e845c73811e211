"""API keys and roles. `Authorization: Bearer KEY`; each key has one role.

| role   | may |
|--------|-----|
| cms    | write articles, read them, search, feed, rank, headline variants (not per reader) |
| writer | drafts (not per reader), headline variants (not per reader), search, read articles |
| app    | personalized summaries, events (also of sponsored items), feed, read articles |
| ads    | advertisers' campaigns: create, change, delete, delivery reports (no reader data) |
| admin  | everything, including user deletion and export, and campaign previews |

Only the roles in `READER_DATA_ROLES` may name a reader (`user_id`) where a route is open to
other roles as well (`require_reader_data`).

Keys are kept only as SHA-256 digests and compared in constant time against every known key
(no early exit), so neither the comparison nor its position leaks a key. Keys never reach a log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from core.errors import Forbidden, Unauthorized
from core.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["cms", "writer", "app", "ads", "admin"]
ROLES: tuple[Role, ...] = ("cms", "writer", "app", "ads", "admin")
KEYS_FILE_NAME = "api_keys"
MIN_KEY_CHARS = 16


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    entries: tuple[tuple[str, bytes], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def parse(cls, text: str, source: str) -> KeyRing:
        """`role=key` items separated by commas or newlines; `#` starts a comment line."""
        entries = []
        for raw in text.replace(",", "\n").splitlines():
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            role, sep, key = item.partition("=")
            role, key = role.strip(), key.strip()
            if not sep or role not in ROLES:
                raise ValueError(
                    f"{source}: each entry must be role=key with role one of {', '.join(ROLES)}"
                )
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(f"{source}: a {role} key is shorter than {MIN_KEY_CHARS} chars")
            entries.append((role, _digest(key)))
        return cls(tuple(entries))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        if settings.api_keys is not None:
            return cls.parse(settings.api_keys.get_secret_value(), "NEWSROOM_API_KEYS")
        path = settings.api_keys_file or settings.data_dir / KEYS_FILE_NAME
        if path.is_file():
            return cls.parse(path.read_text(encoding="utf-8"), str(path))
        if settings.api_keys_file is not None:
            raise ValueError(f"NEWSROOM_API_KEYS_FILE={path} does not exist")
        return cls()

    def role_of(self, presented: str) -> str | None:
        digest = _digest(presented)
        found = None
        for role, known in self.entries:
            if hmac.compare_digest(digest, known) and found is None:
                found = role
        return found


def write_demo_keys(path: Path) -> dict[str, str]:
    """One fresh key per role in a 0600 file (kept if it exists); returns role -> key."""
    import os
    import secrets

    if path.is_file():
        pairs = [line.split("=", 1) for line in path.read_text().splitlines() if "=" in line]
        kept = {role.strip(): key.strip() for role, key in pairs}
        # A role added since the file was written (e.g. `ads`) gets its key appended.
        added = {r: f"nr_{r}_{secrets.token_urlsafe(24)}" for r in ROLES if r not in kept}
        if added:
            with open(path, "a") as handle:
                handle.write("".join(f"{role}={key}\n" for role, key in added.items()))
        return {**kept, **added}
    keys = {role: f"nr_{role}_{secrets.token_urlsafe(24)}" for role in ROLES}
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("".join(f"{role}={key}\n" for role, key in keys.items()))
    return keys


class RoleCheck:
    """What `allow(...)` declares on a route: the caller's key must have one of `roles`
    (admin always passes). `AuthorizedRoute` runs it before the body is read; as a dependency
    it runs again only where that did not happen."""

    def __init__(self, roles: tuple[Role, ...]) -> None:
        self.roles = roles

    async def __call__(self, request: Request) -> None:
        if not getattr(request.state, "role_checked", False):
            self.authorize(request)

    def authorize(self, request: Request) -> None:
        ring: KeyRing = request.app.state.keyring
        request.state.role_checked = True
        if not ring.enabled:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
        role = ring.role_of(token.strip())
        if role is None:
            raise Unauthorized("unknown API key")
        if role != "admin" and role not in self.roles:
            raise Forbidden(f"the {role} role may not do this; it needs {' or '.join(self.roles)}")
        request.state.role = role


# Roles entitled to reader data: whether a reader exists, their segment, their interests. The
# app serves readers (it already gets their personalized summaries); admin may do everything.
READER_DATA_ROLES: tuple[Role, ...] = ("app", "admin")


def require_reader_data(request: Request) -> None:
    """For a request that names a reader (`user_id`) on a route open to other roles too:
    403 unless the caller's role is entitled to reader data, checked before the reader is
    looked up, so the answer says nothing about them."""
    if not request.app.state.keyring.enabled:
        return
    role = getattr(request.state, "role", None)
    if role not in READER_DATA_ROLES:
        raise Forbidden(
            f"the {role} role may not name a reader (user_id reveals their interests); only "
            f"{' or '.join(READER_DATA_ROLES)} may: leave user_id out",
            field="user_id",
        )


def allow(*roles: Role) -> Any:
    """A route's roles: `dependencies=[allow("cms", "writer")]` (admin always passes)."""
    return Depends(RoleCheck(roles))


class AuthorizedRoute(APIRoute):
    """A route that checks its `allow(...)` roles before FastAPI reads and parses the request
    body (FastAPI parses it before any dependency runs): a request without a valid key gets
    its 401, or a key of the wrong role its 403, without the server reading a byte of body.
    Every router with `allow(...)` routes uses it (`APIRouter(route_class=AuthorizedRoute)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        checks = [d.dependency for d in self.dependencies if isinstance(d.dependency, RoleCheck)]
        if not checks:
            return handler

        async def authorized(request: Request) -> Response:
            for check in checks:
                check.authorize(request)
            return await handler(request)

        return authorized
