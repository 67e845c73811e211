"""Every route's role matrix: allowed roles pass, others get 403, no or unknown key 401."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ROLES, KeyRing, write_demo_keys
from core.service import NewsroomService
from core.settings import Settings
from retrieval.embedder import Embedder

KEYS = {role: f"{role}-key-0123456789abcdef" for role in ROLES}

# (method, path, json body, roles allowed besides admin)
MATRIX = [
    ("POST", "/v1/articles", {"id": "z1", "title": "T"}, {"cms"}),
    ("POST", "/v1/articles/bulk", {"articles": [{"id": "z2", "title": "T"}]}, {"cms"}),
    ("PUT", "/v1/articles/h1", {"title": "Stocks rally again"}, {"cms"}),
    ("GET", "/v1/articles/h1", None, {"cms", "writer", "app"}),
    ("GET", "/v1/articles/h1/related?k=2", None, {"cms", "writer"}),
    ("DELETE", "/v1/articles/nope", None, {"cms"}),
    ("GET", "/v1/search?q=rates", None, {"cms", "writer"}),
    ("POST", "/v1/events", {"user_id": "u1", "article_id": "h1", "type": "click"}, {"app"}),
    ("GET", "/v1/users/u1/feed?k=2", None, {"cms", "app"}),
    ("POST", "/v1/rank", {"user_id": "u1", "article_ids": ["h1"]}, {"cms"}),
    ("GET", "/v1/users/u1/articles/nope/summary", None, {"app"}),
    ("POST", "/v1/articles/nope/headlines", {"n": 1}, {"cms", "writer"}),
    ("POST", "/v1/drafts", {"brief": " "}, {"writer"}),
    (
        "POST",
        "/v1/drafts/sentence",
        {"brief": " ", "sources": ["h1"], "sentences": ["x"], "index": 0},
        {"writer"},
    ),
    ("GET", "/v1/segments", None, {"cms", "writer", "app"}),
    ("GET", "/v1/articles/nope/summaries/generic", None, {"cms", "writer"}),
    ("GET", "/v1/quality", None, {"cms", "writer"}),
    ("GET", "/v1/example-readers", None, {"cms", "writer", "app"}),
    ("GET", "/v1/users/u1/export", None, set()),
    ("DELETE", "/v1/users/nobody", None, set()),
    ("POST", "/v1/campaigns", {"advertiser": "A"}, {"ads"}),
    ("GET", "/v1/campaigns", None, {"ads"}),
    ("GET", "/v1/campaigns/c-000000000000", None, {"ads"}),
    ("PATCH", "/v1/campaigns/c-000000000000", {"status": "paused"}, {"ads"}),
    ("DELETE", "/v1/campaigns/c-000000000000", None, {"ads"}),
    ("GET", "/v1/campaigns/c-000000000000/report", None, {"ads"}),
    ("GET", "/v1/campaigns/c-000000000000/preview", None, set()),
    ("POST", "/v1/articles/h1/headline-tests", {"variants": ["A", "B"]}, {"cms"}),
    ("GET", "/v1/articles/h1/headline-tests", None, {"cms"}),
    ("GET", "/v1/articles/h1/headline?user_id=u1", None, {"cms", "app"}),
    ("GET", "/v1/headline-tests/nope", None, {"cms"}),
    ("POST", "/v1/headline-tests/nope/lock", {"variant_id": "v1"}, {"cms"}),
    ("POST", "/v1/headline-tests/nope/stop", None, {"cms"}),
    ("POST", "/v1/experiments", {"name": "x"}, set()),
    ("GET", "/v1/experiments", None, set()),
    ("GET", "/v1/experiments/exp_000000000000", None, set()),
    ("POST", "/v1/experiments/exp_000000000000/stop", {}, set()),
    ("GET", "/v1/models", None, set()),
]


@pytest.fixture
def keyed_client(
    tmp_path: Path, embedder: Embedder, headline_drafts, database_url: str | None
) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    keys = ",".join(f"{role}={key}" for role, key in KEYS.items())
    settings = Settings(
        data_dir=tmp_path / "var", api_keys=keys, database_url=database_url, _env_file=None
    )  # type: ignore[call-arg]
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts)
    with TestClient(create_app(settings, service)) as client:
        yield client
    service.close()


def _call(client: TestClient, method: str, path: str, body: object, key: str | None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.request(method, path, json=body, headers=headers)


def test_every_route_enforces_its_roles(keyed_client: TestClient) -> None:
    for method, path, body, allowed in MATRIX:
        missing = _call(keyed_client, method, path, body, None)
        assert missing.status_code == 401, (method, path)
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert _call(keyed_client, method, path, body, "wrong-key-0123456789").status_code == 401
        for role, key in KEYS.items():
            status = _call(keyed_client, method, path, body, key).status_code
            if role == "admin" or role in allowed:
                assert status not in (401, 403), (method, path, role, status)
            else:
                assert status == 403, (method, path, role, status)


def test_keys_and_roles_are_checked_before_the_body_is_parsed(keyed_client: TestClient) -> None:
    malformed = b'{"not": json'
    for method, path, body, allowed in MATRIX:
        if body is None:
            continue
        refused = [role for role in KEYS if role != "admin" and role not in allowed]
        for key, status in [(None, 401), ("wrong-key-0123456789", 401)] + [
            (KEYS[role], 403) for role in refused
        ]:
            headers = {"content-type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            answer = keyed_client.request(method, path, content=malformed, headers=headers)
            assert answer.status_code == status, (method, path, key, answer.text)
        admin = {"Authorization": f"Bearer {KEYS['admin']}", "content-type": "application/json"}
        assert (
            keyed_client.request(method, path, content=malformed, headers=admin).status_code == 422
        )


def test_a_request_without_a_key_is_refused_before_its_body_is_read(
    keyed_client: TestClient,
) -> None:
    app = keyed_client.app
    body = b'{"articles": [' + b'{"title": "x"},' * 400_000 + b'{"title": "y"}]}'  # ~6.4 MB
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/articles/bulk",
        "raw_path": b"/v1/articles/bulk",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 401 and reads == 0


def test_only_roles_entitled_to_reader_data_may_name_a_reader(keyed_client: TestClient) -> None:
    click = {"user_id": "u1", "article_id": "h1", "type": "click"}
    app = {"Authorization": f"Bearer {KEYS['app']}"}
    assert keyed_client.post("/v1/events", json=click, headers=app).status_code == 200
    # (path, body naming a reader, roles that may call the route but not for a reader)
    cases = [
        ("/v1/articles/nope/headlines", {"n": 1}, ("cms", "writer")),
        ("/v1/drafts", {"brief": " "}, ("writer",)),
    ]
    for path, body, roles in cases:
        for role in roles:
            headers = {"Authorization": f"Bearer {KEYS[role]}"}
            # The same answer whether the reader exists or not: nothing about them leaks.
            for reader in ("u1", "nobody"):
                answer = keyed_client.post(path, json={**body, "user_id": reader}, headers=headers)
                assert answer.status_code == 403, (path, role, reader, answer.text)
                assert answer.json()["error"]["field"] == "user_id"
            without = keyed_client.post(path, json=body, headers=headers)
            assert without.status_code in (404, 422), (path, role)  # past the role checks
        admin = {"Authorization": f"Bearer {KEYS['admin']}"}
        answer = keyed_client.post(path, json={**body, "user_id": "u1"}, headers=admin)
        assert answer.status_code in (404, 422), (path, answer.text)


def test_the_matrix_covers_every_api_route(keyed_client: TestClient) -> None:
    def template(path: str) -> str:
        ids = r"/(u1|nobody|h1|nope|generic|c-0{12}|exp_0{12})(?=/|$)"
        return re.sub(ids, "/{}", path.split("?")[0])

    covered = {(method, template(path)) for method, path, _, _ in MATRIX}
    schema = keyed_client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in schema.items()
        if path.startswith("/v1")
        for method in operations
    }
    assert len(routes) == 38 and routes <= covered, routes - covered


def test_health_docs_metrics_and_studio_pages_stay_open(keyed_client: TestClient) -> None:
    # The studio's pages hold no data: they ask the API for it with the user's key.
    for path in ("/healthz", "/openapi.json", "/metrics", "/studio/", "/studio/feed"):
        assert keyed_client.get(path).status_code == 200, path
    assert keyed_client.get("/healthz").json()["keys_required"] is True


def test_key_parsing_rejects_unknown_roles_and_short_keys() -> None:
    with pytest.raises(ValueError, match="role one of"):
        KeyRing.parse("root=0123456789abcdef0123", "test")
    with pytest.raises(ValueError, match="shorter"):
        KeyRing.parse("cms=short", "test")
    ring = KeyRing.parse("# comment\ncms=0123456789abcdef0123\napp=abcdef0123456789abcd", "t")
    assert ring.role_of("0123456789abcdef0123") == "cms" and ring.role_of("nope") is None


def test_demo_keys_are_created_once_private_and_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "var" / "api_keys"
    keys = write_demo_keys(path)
    assert set(keys) == set(ROLES) and oct(path.stat().st_mode & 0o777) == "0o600"
    assert write_demo_keys(path) == keys  # a second run keeps them
    # A file from before a role existed gets that role's key added, the others kept.
    path.write_text("".join(f"{r}={k}\n" for r, k in keys.items() if r != "ads"))
    upgraded = write_demo_keys(path)
    assert set(upgraded) == set(ROLES) and upgraded["cms"] == keys["cms"]
    assert write_demo_keys(path) == upgraded
    ring = KeyRing.from_settings(Settings(data_dir=tmp_path / "var", _env_file=None))  # type: ignore[call-arg]
    assert ring.role_of(keys["writer"]) == "writer"
