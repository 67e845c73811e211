"""Domain errors. The API maps each class to one HTTP status in `api/errors.py`."""

from __future__ import annotations


class NewsroomError(Exception):
    """Base class; `field` names the offending input when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(NewsroomError):
    pass


class ArticleNotFound(NotFound):
    def __init__(self, article_id: str) -> None:
        super().__init__(f"article {article_id!r} does not exist", field="id")
        self.article_id = article_id


class UnknownUser(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} has no events", field="user_id")


class InvalidInput(NewsroomError):
    """Input that is well-formed JSON but breaks a domain rule (422)."""


class Conflict(NewsroomError):
    """The request clashes with the current state, e.g. a second running experiment (409)."""


class LimitExceeded(NewsroomError):
    """Input over a configured size limit (413)."""


class ModelUnavailable(NewsroomError):
    """A model or artifact the request needs is not prepared (503)."""


class Overloaded(NewsroomError):
    """The generation queue is full (503 with Retry-After): try again shortly."""

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GenerationCancelled(NewsroomError):
    """The client that asked for the output went away: its generation job stopped, or never
    started. There is nobody left to answer."""


class Unauthorized(NewsroomError):
    """No API key, or one the server does not know (401)."""


class Forbidden(NewsroomError):
    """A valid key whose role may not do this (403)."""


def unavailable_store(exc: BaseException) -> str | None:
    """What is unreachable when `exc` says a store (PostgreSQL, Redis) cannot be reached: a
    503 the client can retry, never a 500 or a hang (timeouts bound every call)."""
    import redis
    from sqlalchemy import exc as sql

    if isinstance(exc, sql.OperationalError | sql.InterfaceError | sql.TimeoutError):
        return "the database is unreachable; retry shortly"
    if isinstance(exc, sql.DBAPIError) and exc.connection_invalidated:
        return "the database connection was lost; retry shortly"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "the shared cache (Redis) is unreachable; retry shortly"
    return None
