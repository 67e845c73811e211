"""`/metrics` and the access log stay bounded whatever a client sends."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient


def test_custom_methods_share_one_label_and_metrics_stay_small(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = len(client.get("/metrics").content)
    methods = [f"X{n:02d}" + "Q" * 8000 for n in range(20)]
    with caplog.at_level(logging.INFO, logger="newsroom.access"):
        for method in methods:
            assert client.request(method, "/v1/articles").status_code == 405
    metrics = client.get("/metrics").text
    assert 'method="OTHER"' in metrics and not any(m[:20] in metrics for m in methods)
    # One new series (OTHER, the route, 405), not twenty of 8 KB each.
    assert len(metrics.encode()) < baseline + 5_000
    logged = [r.getMessage() for r in caplog.records if r.name == "newsroom.access"]
    assert len(logged) == 20 and all('"method": "OTHER"' in line for line in logged)
    assert max(map(len, logged)) < 200
    assert client.get("/healthz").status_code == 200
    assert 'method="GET",route="/healthz"' in client.get("/metrics").text
