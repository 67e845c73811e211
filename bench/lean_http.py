"""A lean HTTP/1.1 keep-alive client for load generation on the server's own box.

The feed benchmark's load generator shares two cores with the server it measures. httpx spends
~2.2 ms of CPU per feed request (0.4-0.5 of a core at 200 req/s), CPU a real CMS would spend
on its own machine. One keep-alive connection per load worker, requests written as bytes and
answers read by Content-Length, costs a fraction of that: the server gets the cores it would
have in production, and the benchmark still reports what the load generator used.

Only what the benchmark needs: GET and POST with a JSON body, Content-Length answers (every
JSON route), no redirects, no TLS, no chunked encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

_dumps = json.dumps  # `post(json=...)` mirrors httpx and shadows the module inside it


class LeanHTTPError(Exception):
    """The connection failed or the answer was not HTTP/1.1 with a Content-Length."""


class LeanResponse:
    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class LeanConnection:
    """One keep-alive connection; requests on it run one at a time (one per load worker)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http://host:port URLs: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._host_header = f"Host: {parts.netloc}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, params: dict[str, Any] | None = None) -> LeanResponse:
        if params:
            path = f"{path}?{urlencode(params)}"
        return await self.request("GET", path)

    async def post(self, path: str, json: Any) -> LeanResponse:
        return await self.request("POST", path, _dumps(json).encode())

    async def request(self, method: str, path: str, body: bytes | None = None) -> LeanResponse:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(method, path, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.aclose()  # never reuse a connection in an unknown state
            raise LeanHTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, method: str, path: str, body: bytes | None) -> LeanResponse:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._host_header
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        writer.write(head + b"\r\n" + (body or b""))
        status_line = await reader.readline()
        if not status_line.startswith(b"HTTP/1.1 "):
            raise ValueError(f"not an HTTP/1.1 answer: {status_line[:40]!r}")
        status = int(status_line[9:12])
        length = None
        close = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ValueError("answer without Content-Length")
        content = await reader.readexactly(length)
        if close:
            await self.aclose()
        return LeanResponse(status, content)

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
