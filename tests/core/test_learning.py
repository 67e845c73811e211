"""The learning loop's online half: the exposure log and its click joins, top-slot exploration
propensities, deterministic experiment assignment, the SNIPS estimator, experiments over the
API, and retrain -> register -> promote picked up by a running server."""

from __future__ import annotations

import time
from collections import Counter
from itertools import islice

import numpy as np
import pytest

from core.datasets import read_articles
from core.learning import COMMITTED_HEAD, TopSlotExploration, arm_of, bucket_of
from core.retrain import RetrainConfig, beats, retrain, snips
from ranking.scorer import ClickScorer
from tests.conftest import data_path


@pytest.fixture
def loaded(client, service):
    drafts = list(islice(read_articles(data_path("mind_demo_news"), "mind"), 200))
    service.articles.ingest(drafts)
    return [d.id for d in drafts]


def _feed(client, user, **params):
    response = client.get(f"/v1/users/{user}/feed", params={"k": 10, **params})
    assert response.status_code == 200, response.json()
    return response.json()


def _click(client, user, article_id):
    body = {"user_id": user, "article_id": article_id, "type": "click"}
    assert client.post("/v1/events", json=body).status_code == 200


# --- exposure log ---------------------------------------------------------------------------
def test_feeds_are_logged_and_clicks_join_the_exposure_they_came_from(client, service, loaded):
    _click(client, "reader-1", loaded[0])
    feed = _feed(client, "reader-1")
    shown = [i["id"] for i in feed["items"]]
    assert feed["feed_id"] and feed["experiment"] is None
    _click(client, "reader-1", shown[2])
    unshown = next(a for a in reversed(loaded) if a not in shown and a != loaded[0])
    _click(client, "reader-1", unshown)  # organic: joins nothing

    service.learning.exposures.flush()
    store = service.learning.registry.store
    [logged] = store.user_feeds(service.storage.pseudonym("reader-1"))
    assert logged.feed_id == feed["feed_id"]
    assert logged.model_version == service.recommender.head_name
    assert [i.position for i in logged.items] == list(range(len(shown)))
    keys = [service.articles.key_of(a) for a in shown]
    assert [i.article_key for i in logged.items] == keys
    # only the shown item that was clicked joins; scores are the head's, in feed order
    assert [i.clicked for i in logged.items] == [n == 2 for n in range(len(shown))]
    scores = [i["score"] for i in feed["items"]]  # rounded in the API
    assert [i.score for i in logged.items] == pytest.approx(scores, abs=1e-5)
    # a second click on the same item does not count twice
    _click(client, "reader-1", shown[2])
    [again] = store.user_feeds(service.storage.pseudonym("reader-1"))
    assert sum(i.clicked for i in again.items) == 1


def test_rank_answers_are_logged_too(client, service, loaded):
    response = client.post("/v1/rank", json={"user_id": "cms-reader", "article_ids": loaded[:5]})
    assert response.status_code == 200
    service.learning.exposures.flush()
    [logged] = service.learning.registry.store.user_feeds(service.storage.pseudonym("cms-reader"))
    assert logged.surface == "rank" and len(logged.items) == 5


def test_export_shows_and_deletion_removes_the_readers_exposures(client, service, loaded):
    _click(client, "reader-2", loaded[1])
    feed = _feed(client, "reader-2")
    exported = client.get("/v1/users/reader-2/export").json()
    [entry] = exported["exposures"]
    assert [i["article_id"] for i in entry["items"]] == [i["id"] for i in feed["items"]]
    assert client.delete("/v1/users/reader-2").status_code == 200
    store = service.learning.registry.store
    assert store.user_feeds(service.storage.pseudonym("reader-2")) == []


# --- exploration ----------------------------------------------------------------------------
class _Item:
    def __init__(self, key: int) -> None:
        self.entry = type("Entry", (), {"key": key})()


def test_top_slot_exploration_has_the_propensities_it_logs():
    epsilon, pool = 0.3, 5
    exploration = TopSlotExploration(epsilon, pool, seed=7)
    items = [_Item(k) for k in range(20)]
    firsts, propensity_of = Counter(), {}
    for _ in range(20_000):
        explored = exploration.apply(list(items))
        first = explored.items[0].entry.key
        firsts[first] += 1
        propensity_of[first] = explored.propensity
        assert sorted(i.entry.key for i in explored.items) == list(range(20))  # a permutation
        assert explored.candidates == [0, 1, 2, 3, 4]
    assert set(firsts) == set(range(pool))
    assert propensity_of[0] == pytest.approx(1 - epsilon + epsilon / pool)
    assert propensity_of[3] == pytest.approx(epsilon / pool)
    for key, count in firsts.items():  # the logged propensity is the observed frequency
        assert count / 20_000 == pytest.approx(propensity_of[key], abs=0.01)
    off = TopSlotExploration(0.0, pool).apply(list(items))
    assert off.propensity == 1.0 and [i.entry.key for i in off.items] == list(range(20))


def test_an_outage_loses_no_logged_feed_and_a_retry_writes_none_twice(service, loaded):
    from sqlalchemy.exc import OperationalError

    from core.learning import ExposureLog, logged_feed
    from core.settings import LearningConfig

    store = service.learning.registry.store
    real_write = store.write_feeds
    calls = []

    def flaky(feeds, retry=False):
        calls.append(retry)
        if len(calls) == 1:  # the database is down
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if len(calls) == 2:  # it commits, but the answer is lost with the connection
            real_write(feeds, retry)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        real_write(feeds, retry)

    store.write_feeds = flaky  # type: ignore[method-assign]
    log = ExposureLog(store, LearningConfig())
    item = service.recommender.rank("outage-reader", [service.articles.key_of(loaded[0])])
    feeds = [logged_feed(f"p_outage_{n}", "rank", item, "head") for n in range(3)]
    log.record(feeds[0])  # not started: written through, refused, kept
    log.record(feeds[1])  # retried with it: committed, answer lost, kept
    assert log.dropped == 0
    log.record(feeds[2])  # retried again: the two already stored are skipped
    assert calls == [False, True, True]
    assert log.flush() == 0  # nothing left over
    for feed in feeds:
        assert [f.feed_id for f in store.user_feeds(feed.user)] == [feed.feed_id]


def test_a_periodic_read_serves_the_last_value_while_the_database_is_down(monkeypatch):
    from sqlalchemy.exc import OperationalError

    from core.storage import PeriodicRead

    answers = iter(["first", OperationalError("SELECT", {}, Exception("down")), "back"])

    def load():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    read = PeriodicRead(load, ttl_s=60, initial="none")
    assert read.get() == "first" and read.get() == "first"  # cached
    read.invalidate()
    assert read.get() == "first"  # the database is down: the last value read
    read.invalidate()
    assert read.get() == "back"
    broken = PeriodicRead(lambda: 1 / 0, ttl_s=60, initial=0)
    with pytest.raises(ZeroDivisionError):  # not an outage: a bug shows
        broken.get()


# --- assignment -----------------------------------------------------------------------------
def test_assignment_is_deterministic_and_follows_the_weights():
    arms = [{"name": "control", "weight": 3}, {"name": "treatment", "weight": 1}]
    readers = [f"p_{n}" for n in range(20_000)]
    first = [arm_of(arms, bucket_of("exp_1", r)) for r in readers]
    assert first == [arm_of(arms, bucket_of("exp_1", r)) for r in readers]
    share = first.count("treatment") / len(first)
    assert share == pytest.approx(0.25, abs=0.015)
    # independent across experiments: another experiment reshuffles readers
    other = [arm_of(arms, bucket_of("exp_2", r)) for r in readers]
    both = sum(a == b == "treatment" for a, b in zip(first, other, strict=True)) / len(readers)
    assert both == pytest.approx(0.25 * 0.25, abs=0.01)


# --- off-policy estimate --------------------------------------------------------------------
def test_snips_on_a_hand_made_log():
    # four logged rounds; the target agrees with rounds 0, 1 and 3
    matches = np.array([1, 1, 0, 1])
    rewards = np.array([1.0, 0.0, 1.0, 1.0])
    propensities = np.array([0.5, 0.25, 0.9, 0.1])
    estimate = snips(matches, rewards, propensities, bootstrap=200)
    weights = np.array([2.0, 4.0, 0.0, 10.0])
    assert estimate.value == pytest.approx((2 + 10) / 16)
    assert estimate.effective_sample_size == pytest.approx(16**2 / (weights**2).sum())
    assert estimate.matched == 3
    low, high = estimate.ci
    assert 0 <= low <= estimate.value <= high <= 1
    assert snips(np.zeros(3), np.ones(3), np.ones(3)).value is None


def test_the_promotion_bar_needs_both_metrics():
    assert beats({"auc": 0.7, "ndcg@10": 0.5}, {"auc": 0.6, "ndcg@10": 0.4})
    assert not beats({"auc": 0.7, "ndcg@10": 0.3}, {"auc": 0.6, "ndcg@10": 0.4})
    assert not beats({"auc": None, "ndcg@10": 0.5}, {"auc": 0.6, "ndcg@10": 0.4})


# --- experiments over the API ---------------------------------------------------------------
def test_experiment_lifecycle(client, service, loaded):
    arms = [
        {"name": "control"},
        {"name": "diverse", "mmr_lambda": 0.3, "freshness_half_life_hours": 6},
    ]
    bad = client.post("/v1/experiments", json={"name": "x", "arms": arms[:1]})
    assert bad.status_code == 422 and "arms" in str(bad.json())
    dup = client.post("/v1/experiments", json={"name": "x", "arms": [arms[0], arms[0]]})
    assert dup.status_code == 422 and dup.json()["error"]["field"] == "arms"
    unknown = [arms[0], {"name": "new-head", "ranker_version": "ranker-nope"}]
    response = client.post("/v1/experiments", json={"name": "x", "arms": unknown})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "arms[1].ranker_version"

    created = client.post("/v1/experiments", json={"name": "diversity", "arms": arms})
    assert created.status_code == 201, created.json()
    experiment_id = created.json()["experiment_id"]
    second = client.post("/v1/experiments", json={"name": "again", "arms": arms})
    assert second.status_code == 409

    seen = {}
    for n in range(16):
        user = f"exp-reader-{n}"
        _click(client, user, loaded[n])
        feed = _feed(client, user)
        assert feed["experiment"]["experiment_id"] == experiment_id
        seen[user] = feed["experiment"]["arm"]
        assert _feed(client, user)["experiment"]["arm"] == seen[user]  # sticky
        _click(client, user, feed["items"][0]["id"])
        if n % 3 == 0:  # readers differ: a second click for some
            _click(client, user, feed["items"][1]["id"])
    assert set(seen.values()) == {"control", "diverse"}
    # the arm's settings are what its readers' feeds were built with
    arm_recommender = next(
        r for (e, a), r in service.feeds._arms.items() if e == experiment_id and a == "diverse"
    )
    assert arm_recommender.config.mmr_lambda == 0.3
    assert arm_recommender.config.freshness_half_life_hours == 6
    assert service.recommender.config.mmr_lambda != 0.3

    report = client.get(f"/v1/experiments/{experiment_id}").json()
    assert report["method"] == "sequential" and report["control"] == "control"
    by_arm = {a["name"]: a for a in report["arms"]}
    assert sum(a["readers"] for a in by_arm.values()) == 16
    assert sum(a["clicks"] for a in by_arm.values()) == 16 + 6  # the clicks on shown items
    assert by_arm["control"]["comparison"] is None
    assert by_arm["diverse"]["comparison"]["p_value"] is not None
    listed = client.get("/v1/experiments").json()["experiments"]
    assert [e["experiment_id"] for e in listed] == [experiment_id]

    stopped = client.post(f"/v1/experiments/{experiment_id}/stop", json={"promote": True})
    assert stopped.status_code == 200
    assert stopped.json()["experiment"]["status"] == "stopped"
    assert stopped.json()["experiment"]["promoted_version"] is None  # no head arm to promote
    assert client.get(f"/v1/experiments/{experiment_id}").json()["status"] == "stopped"
    again = client.post(f"/v1/experiments/{experiment_id}/stop", json={})
    assert again.status_code == 409
    service.experiments._forget_cache()
    assert _feed(client, "exp-reader-0")["experiment"] is None
    assert client.get("/v1/experiments/exp_000000000000").status_code == 404


def test_interleaving_experiment_credits_each_readers_clicks_to_the_arm_that_showed_them(
    client, service, loaded
):
    arms = [{"name": "control"}, {"name": "fresh", "freshness_half_life_hours": 0.5}]
    three = [*arms, {"name": "third", "mmr_lambda": 0.5}]
    bad = client.post("/v1/experiments", json={"name": "x", "arms": three, "mode": "interleaving"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "arms"
    assert client.get("/v1/models").json()["prompt_versions"] == ["v1", "v2"]
    body = {"name": "freshness", "arms": arms, "mode": "interleaving"}
    created = client.post("/v1/experiments", json=body)
    assert created.status_code == 201 and created.json()["mode"] == "interleaving"
    experiment_id = created.json()["experiment_id"]
    store = service.learning.registry.store

    def teams_of(user, feed):
        service.learning.exposures.flush()
        [logged] = [
            f
            for f in store.user_feeds(service.storage.pseudonym(user))
            if f.feed_id == feed["feed_id"]
        ]
        keys = [service.articles.key_of(i["id"]) for i in feed["items"]]
        assert [i.article_key for i in logged.items] == keys
        assert logged.arm == "interleaved" and logged.experiment_id == experiment_id
        assert logged.items[0].propensity in (0.5, 1.0)
        return [i.team for i in logged.items]

    prefers = {}
    for n in range(14):
        user = f"il-reader-{n}"
        _click(client, user, loaded[n])
        feed = _feed(client, user)
        assert feed["experiment"] == {"experiment_id": experiment_id, "arm": "interleaved"}
        teams = teams_of(user, feed)
        assert set(teams) <= {"a", "b"} and abs(teams.count("a") - teams.count("b")) <= 1
        first_of = {t: feed["items"][teams.index(t)]["id"] for t in ("a", "b") if t in teams}
        if n == 13:  # one click for each arm: no preference
            _click(client, user, first_of["a"])
            _click(client, user, first_of["b"])
            prefers[user] = "tie"
        else:  # most readers click the treatment's item, two the control's
            team = "a" if n in (0, 1) else "b"
            _click(client, user, first_of[team])
            prefers[user] = team

    report = client.get(f"/v1/experiments/{experiment_id}").json()
    assert report["method"] == "interleaving" and report["metric"] == "reader_preference"
    control, fresh = report["arms"]
    assert control["comparison"] is None
    comparison = fresh["comparison"]
    assert (comparison["wins"], comparison["losses"], comparison["ties"]) == (11, 2, 1)
    assert comparison["p_value"] == pytest.approx(0.0225, abs=1e-3)  # exact sign test, 11 of 13
    assert comparison["significant"] and report["winner"] == "fresh"
    assert control["clicks"] == 3 and fresh["clicks"] == 12
    assert control["readers"] == fresh["readers"] == 14
    stopped = client.post(f"/v1/experiments/{experiment_id}/stop", json={"promote": True})
    assert stopped.status_code == 200 and stopped.json()["report"]["winner"] == "fresh"
    assert stopped.json()["experiment"]["promoted_version"] is None  # settings, not a head


# --- retrain -> register -> promote ------------------------------------------------------------
def test_retrain_registers_a_challenger_and_promotion_reaches_the_running_server(
    client, service, loaded, embedder, settings
):
    rng = np.random.default_rng(0)
    # readers who click what matches their first click's category: a signal to learn
    categories = {
        a: service.recommender.catalog.get(service.articles.key_of(a)).category for a in loaded
    }
    for n in range(60):
        user = f"sim-{n}"
        _click(client, user, loaded[n % 40])
        liked = categories[loaded[n % 40]]
        for _ in range(2):
            feed = _feed(client, user)
            for item in feed["items"]:
                p = 0.5 if categories.get(item["id"]) == liked else 0.05
                if rng.random() < p:
                    _click(client, user, item["id"])
    store = service.learning.registry.store
    config = RetrainConfig(
        work_dir=settings.data_dir / "retrain",
        cache_dir=settings.data_dir / "cache",
        min_feeds=20,
        epochs=2,
        bootstrap=50,
        progress=False,
    )
    result = retrain(
        config, store, service.storage, embedder, (COMMITTED_HEAD, service.recommender.scorer)
    )
    metrics = result.report["metrics"]
    assert metrics["feeds"] == 24  # 20% of 120 logged feeds, the most recent
    for head in ("champion", "challenger"):
        assert 0 <= metrics[head]["auc"] <= 1
        assert metrics[head]["feeds_with_clicks"] > 0
    assert (result.report_path.parent / "report.png").stat().st_size > 0
    [version] = store.versions()
    assert version.version == result.version and version.status == "challenger"
    assert service.recommender.head_name != result.version  # registering never promotes

    listed = client.get("/v1/models").json()
    assert listed["versions"][0]["version"] == result.version

    assert store.promote(result.version)  # what `newsroom promote` does, from any process
    deadline = time.monotonic() + 10
    while service.recommender.head_name != result.version and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.recommender.head_name == result.version
    expected = ClickScorer.load(result.report_path.parent / "challenger")
    assert np.allclose(service.recommender.scorer.click_w, expected.click_w)
    assert client.get("/v1/models").json()["serving"] == result.version
    assert _feed(client, "sim-0")["items"]


def test_stopping_with_promote_makes_the_winning_arms_head_the_champion(service, monkeypatch):
    from core.settings import RankingConfig

    head = RankingConfig().model_dir
    store = service.learning.registry.store
    store.register_version(
        "ranker-winner",
        "ranker",
        {},
        (head / "config.json").read_text(),
        (head / "model.safetensors").read_bytes(),
    )
    arms = [{"name": "control"}, {"name": "new", "ranker_version": "ranker-winner"}]
    experiment = service.experiments.create("heads", arms)
    monkeypatch.setattr(service.experiments, "report", lambda _: {"winner": "new", "arms": []})
    stopped, outcome = service.experiments.stop(experiment.id, promote=True)
    assert outcome["promoted_version"] == "ranker-winner" and stopped.status == "stopped"
    assert store.champion() == "ranker-winner"
    # without a significant winner nothing is promoted
    other = service.experiments.create("again", arms)
    monkeypatch.setattr(service.experiments, "report", lambda _: {"winner": None, "arms": []})
    _, outcome = service.experiments.stop(other.id, promote=True)
    assert outcome["promoted_version"] is None and store.champion() == "ranker-winner"
