"""Crash safety: SIGKILL `newsroom serve` in the middle of a bulk ingest; after a restart every
acknowledged article is stored and searchable, and the index matches the database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.datasets import read_bbc
from tests.conftest import data_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSROOM_")}
    env["NEWSROOM_DATA_DIR"] = str(data_dir)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "server did not start in 120 s"
        time.sleep(0.3)


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_no_acknowledged_article(tmp_path: Path) -> None:
    articles = list(read_bbc(data_path("bbc_news_summary")))[:600]
    batches = [articles[i : i + 20] for i in range(0, len(articles), 20)]
    acknowledged: list[str] = []
    stop = threading.Event()
    server, base = _start(tmp_path / "var")

    def ingest() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for batch in batches:
                if stop.is_set():
                    return
                payload = [
                    {"id": a.id, "title": a.title, "body": a.body, "category": a.category}
                    for a in batch
                ]
                try:
                    response = client.post("/v1/articles/bulk", json={"articles": payload})
                except httpx.TransportError:
                    return  # the server died mid-request: this batch was never acknowledged
                if response.status_code == 200:
                    acknowledged.extend(a.id or "" for a in batch)

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        deadline = time.monotonic() + 300
        while len(acknowledged) < 160 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acknowledged) >= 160, "ingest did not progress"
        server.send_signal(signal.SIGKILL)  # mid-stream: the next batch is in flight
        server.wait(timeout=30)
    finally:
        stop.set()
        writer.join(timeout=120)
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) < len(articles), "the kill came after the whole ingest"

    server, base = _start(tmp_path / "var")
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            health = client.get("/healthz").json()
            assert health["index_size"] == health["articles"] >= len(acknowledged)
            by_id = {a.id: a for a in articles}
            for article_id in acknowledged:
                stored = client.get(f"/v1/articles/{article_id}")
                assert stored.status_code == 200, article_id
            # Searchable: each acknowledged article is found by its own headline.
            for article_id in acknowledged[::8]:
                title = by_id[article_id].title
                hits = client.get("/v1/search", params={"q": title, "k": 10}).json()["results"]
                found = {h["id"] for h in hits} | {
                    d for h in hits for d in h.get("duplicate_ids", [])
                }
                assert article_id in found or any(
                    by_id.get(h["id"]) and by_id[h["id"]].body == by_id[article_id].body
                    for h in hits
                ), (article_id, title)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
