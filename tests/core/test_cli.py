"""The `newsroom` CLI end to end: ingest a real dataset twice, then serve it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from core.cli import app
from tests.conftest import data_path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "NEWSROOM_DATA_DIR": str(tmp_path / "var")}


def test_ingest_is_idempotent_and_validates_format(tmp_path):
    runner = CliRunner()
    env = _env(tmp_path)
    source = str(data_path("mind_demo_news"))
    first = runner.invoke(app, ["ingest", source, "--format", "mind"], env=env)
    assert first.exit_code == 0, first.output
    assert "1000 created" in first.output and "1000 embedded" in first.output
    second = runner.invoke(app, ["ingest", source, "--format", "mind"], env=env)
    assert second.exit_code == 0, second.output
    assert "1000 unchanged, 0 embedded" in second.output
    assert (tmp_path / "var" / "index.snapshot").exists()

    bad = runner.invoke(app, ["ingest", source, "--format", "csv"], env=env)
    assert bad.exit_code != 0 and "choose one of" in bad.output

    # Replaying the MIND readers also leaves the studio a few of them to try, most active first.
    replayed = runner.invoke(app, ["replay", "--data", str(data_path())], env=env)
    assert replayed.exit_code == 0, replayed.output
    readers = json.loads((tmp_path / "var" / "example_readers.json").read_text())
    assert 0 < len(readers) <= 12 and all(r.startswith("mind-") for r in readers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_over_http(tmp_path):
    source = tmp_path / "a.jsonl"
    source.write_text('{"id": "s1", "title": "Election results are in", "body": "Votes."}\n')
    env = _env(tmp_path)
    newsroom = [sys.executable, "-m", "core.cli"]
    subprocess.run([*newsroom, "ingest", str(source)], env=env, check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(
        [*newsroom, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "server did not start in 90 s"
                time.sleep(0.5)
        assert health.json()["articles"] == 1
        hits = httpx.get(f"{base}/v1/search", params={"q": "vote count"}, timeout=10).json()
        assert hits["results"][0]["id"] == "s1"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_serve_refuses_several_workers_in_embedded_mode_and_says_what_to_set(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--workers", "2"], env=_env(tmp_path))
    assert result.exit_code != 0
    assert "NEWSROOM_REDIS_URL" in result.output and "NEWSROOM_DATABASE_URL" in result.output


def test_shared_mode_needs_postgres_and_a_pseudonym_secret(tmp_path):
    env = {**_env(tmp_path), "NEWSROOM_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code != 0
    assert "NEWSROOM_DATABASE_URL=postgresql" in str(result.exception) + result.output
