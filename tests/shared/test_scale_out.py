"""Two `newsroom serve` instances on one PostgreSQL + Redis (as on two hosts: separate data
dirs), one of them with `--workers 2`: what a reader or an editor can notice must not depend on
which process answers, and losing a process or Redis must not lose an acknowledged write."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from core.storage import Storage
from tests.servers import NewsroomProcess, ServeProcess
from tests.shared.conftest import READERS, SECRET, Newsroom, headers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(newsroom: Newsroom) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    first = newsroom.serve("host-a")
    second = newsroom.serve("host-b", workers=2)
    first.wait_ready()
    second.wait_ready()
    _wait_for_workers(second, 2)
    yield first, second


def _wait_for_workers(server: ServeProcess, count: int, timeout_s: float = 180) -> set[int]:
    """Until `count` distinct processes have answered /healthz (each one is ready)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} answered:\n{server.log_tail()}"
        try:
            with httpx.Client(base_url=server.base, timeout=5) as client:  # a new connection
                seen.add(client.get("/healthz").json()["live"]["pid"])
        except httpx.TransportError:
            time.sleep(0.2)
    return seen


def _feed(server: ServeProcess, reader: str, k: int = 40) -> dict:
    with httpx.Client(base_url=server.base, timeout=30) as client:  # a new connection
        response = client.get(f"/v1/users/{reader}/feed", params={"k": k}, headers=headers("app"))
    assert response.status_code == 200, response.text
    return response.json()


def _event(server: ServeProcess, reader: str, article_id: str, kind: str) -> httpx.Response:
    return httpx.post(
        f"{server.base}/v1/events",
        json={
            "event_id": uuid.uuid4().hex,
            "user_id": reader,
            "article_id": article_id,
            "type": kind,
        },
        headers=headers("app"),
        timeout=30,
    )


def test_a_click_or_dismiss_is_out_of_the_next_feed_from_any_process(cluster) -> None:
    first, second = cluster
    reader = READERS[2]
    shown = [item["id"] for item in _feed(second, reader)["items"]]
    clicked, dismissed = shown[0], shown[1]

    assert _event(first, reader, clicked, "click").status_code == 200
    for _ in range(6):  # new connections: both of the second instance's processes answer
        assert clicked not in [i["id"] for i in _feed(second, reader)["items"]]

    assert _event(second, reader, dismissed, "dismiss").status_code == 200
    assert dismissed not in [i["id"] for i in _feed(first, reader)["items"]]
    assert dismissed not in [i["id"] for i in _feed(second, reader)["items"]]


def test_an_article_ingested_anywhere_is_searchable_and_in_feeds_everywhere(cluster) -> None:
    first, second = cluster
    lags: list[float] = []
    for n in range(8):
        article = {
            "id": f"fresh-{n}-{uuid.uuid4().hex[:6]}",
            "title": f"Volcanic ash cloud number {n} grounds flights over the {n}th fjord",
            "body": "Airlines cancelled flights as the ash drifted south. More follows.",
            "category": "world",
            "published_at": "2026-12-02T09:00:00Z",
        }
        created = httpx.post(
            f"{second.base}/v1/articles", json=article, headers=headers("cms"), timeout=60
        )
        assert created.status_code == 201, created.text
        acknowledged = time.monotonic()
        pending = {first.base, second.base}
        while pending:
            for base in list(pending):
                found = httpx.get(
                    f"{base}/v1/search",
                    params={"q": article["title"], "k": 1},
                    headers=headers("cms"),
                    timeout=30,
                ).json()["results"]
                if found and found[0]["id"] == article["id"]:
                    pending.discard(base)
            assert time.monotonic() - acknowledged < 10, f"not everywhere after 10 s: {pending}"
        lags.append(time.monotonic() - acknowledged)
        # Feed-eligible on the other instance too: a cold reader's feed has the fresh article.
        cold = _feed(first, f"cold-{uuid.uuid4().hex[:8]}", k=60)
        assert article["id"] in [i["id"] for i in cold["items"]]
    print(
        f"index lag over {len(lags)} ingests: median {statistics.median(lags) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms"
    )
    assert max(lags) < 2.0


def test_deleting_a_reader_through_one_process_removes_them_everywhere(
    cluster, newsroom: Newsroom, shared_redis
) -> None:
    first, second = cluster
    reader = READERS[5]
    assert not _feed(second, reader)["cold_start"]
    deleted = httpx.delete(f"{first.base}/v1/users/{reader}", headers=headers(), timeout=30)
    assert deleted.status_code == 200 and deleted.json()["deleted"]["events"] > 0
    for _ in range(4):
        assert _feed(second, reader)["cold_start"]
        assert _feed(first, reader)["cold_start"]
    exported = httpx.get(f"{second.base}/v1/users/{reader}/export", headers=headers(), timeout=30)
    assert exported.status_code == 404 or exported.json()["events"] == []

    storage = Storage(newsroom.database_url, SECRET.encode())
    try:
        pseudonym = storage.pseudonym(reader)
        assert storage.load_profile(pseudonym) is None
        assert storage.user_events(reader) == []
    finally:
        storage.close()
    client = shared_redis.client()
    for key in client.scan_iter(match=f"*{pseudonym}*"):
        assert client.hget(key, "b") is None, f"{key!r} still holds the reader's profile"


def test_kill_9_of_one_instance_under_load_loses_no_acknowledged_write(
    cluster, newsroom: Newsroom
) -> None:
    _, second = cluster
    doomed = newsroom.serve("host-c")
    doomed.wait_ready()
    acknowledged: list[tuple[str, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    article_ids = [a.id or "" for a in newsroom.articles]

    def write(target: ServeProcess, worker: int) -> None:
        n = 0
        with httpx.Client(base_url=target.base, timeout=30) as client:
            while not stop.is_set():
                reader = f"load-{worker}-{n % 5}"
                event_id = f"k-{worker}-{n}"
                body = {
                    "event_id": event_id,
                    "user_id": reader,
                    "article_id": article_ids[n % len(article_ids)],
                    "type": "click",
                }
                n += 1
                try:
                    response = client.post("/v1/events", json=body, headers=headers("app"))
                except httpx.TransportError:
                    if target is second:
                        failures.append("transport error on the surviving instance")
                    continue  # the doomed instance died mid-request: not acknowledged
                if response.status_code == 200:
                    acknowledged.append((reader, event_id))
                elif target is second:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    def read() -> None:
        while not stop.is_set():
            try:
                _feed(second, READERS[1])
            except AssertionError as exc:
                failures.append(str(exc)[:200])

    threads = [threading.Thread(target=write, args=(doomed, w)) for w in range(2)]
    threads += [threading.Thread(target=write, args=(second, w)) for w in range(2, 4)]
    threads += [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    doomed.kill()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join()

    assert not failures, failures[:5]
    assert len(acknowledged) > 20
    storage = Storage(newsroom.database_url, SECRET.encode())
    try:
        # Stored event ids are digests of the client's id (keyed by the reader, #18).
        stored = {
            (reader, e["event_id"])
            for reader in {r for r, _ in acknowledged}
            for e in storage.user_events(reader)
        }
        lost = [
            (reader, event_id)
            for reader, event_id in acknowledged
            if (reader, storage.event_digest(storage.pseudonym(reader), event_id)) not in stored
        ]
    finally:
        storage.close()
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:3]}"


def test_a_dead_worker_process_is_restarted_by_the_supervisor(cluster) -> None:
    _, second = cluster
    before = second.children()
    assert len(before) == 2
    import os
    import signal

    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while True:
        children = second.children()
        if len(children) == 2 and before[0] not in children:
            break
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.5)
    _wait_for_workers(second, 2)
    assert _feed(second, READERS[1])["items"]


def test_redis_emptied_mid_run_is_refilled_without_a_restart(cluster, shared_redis) -> None:
    first, second = cluster
    statuses: list[int] = []
    stop = threading.Event()

    def read(server: ServeProcess) -> None:
        while not stop.is_set():
            with httpx.Client(base_url=server.base, timeout=30) as client:
                response = client.get(f"/v1/users/{READERS[1]}/feed", headers=headers("app"))
                statuses.append(response.status_code)

    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(read, first), pool.submit(read, second)]
        time.sleep(1)
        shared_redis.client().flushall()
        time.sleep(4)
        stop.set()
        for future in running:
            future.result()
    assert statuses and all(code == 200 for code in statuses), set(statuses)

    client = shared_redis.client()
    deadline = time.monotonic() + 30
    while not client.exists("newsroom:profiles:complete"):
        assert time.monotonic() < deadline, "profiles were not refilled"
        time.sleep(0.2)
    assert not _feed(first, READERS[1])["cold_start"]
    assert not _feed(second, READERS[1])["cold_start"]
    health = httpx.get(f"{first.base}/healthz", timeout=10).json()
    assert health["live"]["redis"] and health["live"]["redis_resets"] >= 1


# --- the generation tier ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def generation_workers(
    newsroom: Newsroom, served_models_dir: Path
) -> Iterator[list[NewsroomProcess]]:
    """Two `newsroom generation-worker`s serving the real SmolLM2 (torch, no adapters, so
    nothing is merged or converted for the test)."""
    workers = []
    for n in range(2):
        env = newsroom.env(
            f"gpu-{n}",
            NEWSROOM_GENERATION__BACKEND="torch",
            NEWSROOM_GENERATION__HEADLINE_ADAPTER="none",
            NEWSROOM_GENERATION__SUMMARY_ADAPTER="none",
            NEWSROOM_GENERATION__DRAFT_ADAPTER="none",
        )
        models = Path(env["NEWSROOM_DATA_DIR"]) / "models"
        if not models.exists():
            models.symlink_to(served_models_dir, target_is_directory=True)
        worker = NewsroomProcess(["generation-worker"], env, newsroom.root / f"gpu-{n}.log")
        newsroom.processes.append(worker)
        workers.append(worker)
    yield workers


def _alive_workers(redis_client) -> int:
    cutoff = (time.time() - 3) * 1000
    beats = redis_client.hgetall("newsroom:gen:workers").values()
    return sum(1 for ms in beats if float(ms) > cutoff)


def test_a_generation_worker_killed_mid_draft_hands_the_draft_to_another(
    newsroom: Newsroom, generation_workers: list[NewsroomProcess], shared_redis
) -> None:
    api = newsroom.serve(
        "host-d",
        NEWSROOM_GENERATION__HEADLINE_ADAPTER="none",
        NEWSROOM_GENERATION__SUMMARY_ADAPTER="none",
        NEWSROOM_GENERATION__DRAFT_ADAPTER="none",
        # fp32 torch on a busy 2-core box, and the draft runs twice: room for both runs.
        NEWSROOM_GENERATION__JOB_TIMEOUT_SECONDS="600",
    )
    api.wait_ready()
    redis_client = shared_redis.client()
    deadline = time.monotonic() + 240
    while _alive_workers(redis_client) < 2:
        assert time.monotonic() < deadline, generation_workers[0].log_tail()
        time.sleep(0.5)

    events: list[tuple[str, dict]] = []
    killed: list[int] = []
    with httpx.stream(
        "POST",
        f"{api.base}/v1/drafts",
        json={"brief": "Airlines and the economy this winter", "related_k": 1},
        headers={**headers("writer"), "Accept": "text/event-stream"},
        timeout=600,
    ) as response:
        assert response.status_code == 200
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "token" and not killed:
                    killed.append(
                        _kill_the_worker_running_the_draft(redis_client, generation_workers)
                    )
    kinds = [k for k, _ in events]
    assert killed and "restart" in kinds, kinds[:20]
    assert kinds[-1] == "done", events[-1]
    assert events[-1][1]["draft"]["text"]

    # With no worker left, a draft is refused at once with a message that says what to do.
    for worker in generation_workers:
        if worker.alive():
            worker.stop()
    redis_client.delete("newsroom:gen:workers")
    refused = httpx.post(
        f"{api.base}/v1/drafts",
        json={"brief": "Rates and mortgages", "related_k": 1},
        headers=headers("writer"),
        timeout=30,
    )
    assert refused.status_code == 503
    assert "generation-worker" in refused.json()["error"]["message"]


def _kill_the_worker_running_the_draft(redis_client, workers: list[NewsroomProcess]) -> int:
    import os
    import signal

    for key in redis_client.scan_iter(match="newsroom:job:*"):
        if key.endswith(b":cancel"):
            continue
        for _, fields in redis_client.xrange(key, count=5):
            if fields[b"t"] == b"start":
                pid = json.loads(fields[b"d"])["worker"]
                assert pid in [w.pid for w in workers]
                os.kill(pid, signal.SIGKILL)
                return pid
    raise AssertionError("no job has started")


def _serving_head(server: ServeProcess) -> str:
    with httpx.Client(base_url=server.base, timeout=30) as client:  # a new connection
        return client.get("/v1/models", headers=headers()).json()["serving"]


def test_experiment_arms_and_a_promoted_head_agree_across_processes(
    cluster, newsroom: Newsroom
) -> None:
    """Assignment is the same whichever process serves a reader; both report the same
    figures; a head promoted from outside (the CLI, another host) reaches every process."""
    from core.learning_store import LearningStore
    from core.settings import RankingConfig

    first, second = cluster
    arms = [{"name": "control"}, {"name": "low-diversity", "mmr_lambda": 0.95}]
    created = httpx.post(
        f"{first.base}/v1/experiments",
        json={"name": "shared", "arms": arms},
        headers=headers(),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    experiment_id = created.json()["experiment_id"]
    time.sleep(2.5)  # each process reads the running experiment at most every 2 s
    for reader in READERS[:4]:
        arms_seen = {_feed(server, reader)["experiment"]["arm"] for server in cluster}
        assert len(arms_seen) == 1, f"{reader} got {arms_seen}"
        feed = _feed(second, reader)
        assert _event(first, reader, feed["items"][0]["id"], "click").status_code == 200
    deadline = time.monotonic() + 10
    while True:  # each process writes its own exposure log every 0.5 s
        reports = [
            httpx.get(
                f"{s.base}/v1/experiments/{experiment_id}", headers=headers(), timeout=30
            ).json()
            for s in cluster
        ]
        feeds = sum(a["feeds"] for a in reports[0]["arms"])
        if reports[0]["arms"] == reports[1]["arms"] and feeds == 4 * 3:
            break
        assert time.monotonic() < deadline, reports
        time.sleep(0.5)
    assert sum(a["readers"] for a in reports[0]["arms"]) == 4
    stopped = httpx.post(
        f"{second.base}/v1/experiments/{experiment_id}/stop", json={}, headers=headers(), timeout=30
    )
    assert stopped.status_code == 200

    # A "new" head: the committed one's files under a version name, registered and promoted
    # through the database only (as `newsroom retrain` + `newsroom promote` on another host).
    head = RankingConfig().model_dir
    storage = Storage(newsroom.database_url, SECRET.encode())
    try:
        store = LearningStore(storage.engine)
        store.register_version(
            "ranker-shared-test",
            "ranker",
            {"metrics": {}},
            (head / "config.json").read_text(),
            (head / "model.safetensors").read_bytes(),
        )
        assert store.promote("ranker-shared-test")
    finally:
        storage.close()
    deadline = time.monotonic() + 15
    while True:  # every process of both instances (the second has two workers)
        heads = {_serving_head(s) for s in (first, second, second, second, second)}
        if heads == {"ranker-shared-test"}:
            break
        assert time.monotonic() < deadline, f"still serving {heads}"
        time.sleep(0.5)
    assert _feed(first, READERS[0])["items"]
