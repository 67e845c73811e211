"""`newsroom` command line: offline jobs (ingest, index rebuild) and the server.

Settings are read once here, at the edge, and passed down. Heavy modules are imported inside
the commands so `newsroom --help` stays instant.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.settings import Settings

EXAMPLE_READERS = 12  # replayed readers the demo suggests in the studio

if TYPE_CHECKING:
    from core.service import NewsroomService

app = typer.Typer(help="Newsroom: personalized news service.", no_args_is_help=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "sentence_transformers", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = Settings()


def _ingest(
    service: NewsroomService,
    path: Path,
    fmt: str,
    label: str | None = None,
    skip_ids: set[str] | None = None,
) -> None:
    from tqdm import tqdm

    from core.datasets import read_articles
    from core.domain import IngestReport

    drafts = list(read_articles(path, fmt))
    if skip_ids is not None:
        # The demo corpora share some MIND ids with different text: the first source wins,
        # otherwise every demo run would re-embed them back and forth.
        drafts = [d for d in drafts if d.id not in skip_ids]
        skip_ids.update(d.id for d in drafts if d.id)
    total = IngestReport()
    started = time.perf_counter()
    with tqdm(total=len(drafts), desc=label or f"ingest {path.name}", unit="art") as bar:
        for report in service.articles.ingest_stream(drafts):
            total.merge(report)
            bar.update(len(report.ids))
            bar.set_postfix(new=len(total.created), embedded=total.embedded)
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{path}: {len(total.created)} created, {len(total.updated)} updated, "
        f"{len(total.unchanged)} unchanged, {total.embedded} embedded in {elapsed:.1f}s"
    )


@app.command()
def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, help="File or folder to read.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="bbc | mind | agnews | xsum | jsonl")
    ] = "jsonl",
) -> None:
    """Ingest articles from a dataset; re-running skips what is unchanged."""
    from core.datasets import ARTICLE_FORMATS
    from core.service import NewsroomService

    if fmt not in ARTICLE_FORMATS:
        raise typer.BadParameter(
            f"choose one of {', '.join(ARTICLE_FORMATS)}", param_hint="--format"
        )
    # An offline ingest owns the machine: the encoder uses every core.
    service = NewsroomService.from_settings(_settings(ctx), progress=True, encoder_threads=0)
    try:
        _ingest(service, path, fmt)
    finally:
        service.close()


@app.command("rebuild-index")
def rebuild_index_command(ctx: typer.Context) -> None:
    """Rebuild the vector index from the stored embeddings (no re-encoding)."""
    from core.service import NewsroomService

    settings = _settings(ctx)
    settings.index_path.unlink(missing_ok=True)
    service = NewsroomService.from_settings(settings, progress=True)
    typer.echo(f"index: {len(service.articles.index)} vectors ({service.articles.index.kind})")
    service.close()


def _replay(service: NewsroomService, data: Path) -> None:
    """Replay MIND histories as events (both MIND layouts), skipping unknown articles."""
    from tqdm import tqdm

    from ranking.replay import mind_behavior_events, mind_impression_events

    sources = (
        ("mind_small_dev_impressions", mind_impression_events),
        ("mind_small_train_sample", mind_behavior_events),
    )
    clicks: Counter[str] = Counter()
    for folder, reader in sources:
        if not (data / folder).is_dir():
            continue
        events = reader(data / folder, service.storage.pseudonym)
        drafts = [d for d in events if service.articles.key_of(d.article_id)]
        clicks.update(d.user_id for d in drafts if d.type == "click")
        accepted = duplicates = 0
        with tqdm(total=len(drafts), desc=f"replay {folder}", unit="ev") as bar:
            for start in range(0, len(drafts), 2000):
                report = service.readers.record_events(drafts[start : start + 2000])
                accepted += report.accepted
                duplicates += report.duplicates
                bar.update(min(2000, len(drafts) - start))
        typer.echo(f"{folder}: {accepted} events recorded, {duplicates} already known")
    # The studio's feed preview offers the readers with the longest histories to try.
    service.status.write_example_readers([user for user, _ in clicks.most_common(EXAMPLE_READERS)])


@app.command()
def replay(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="The shared data folder.")] = Path("../shared/data"),
) -> None:
    """Replay the MIND reading histories as click/impression events (idempotent)."""
    from core.service import NewsroomService

    service = NewsroomService.from_settings(_settings(ctx), progress=True)
    try:
        _replay(service, data)
    finally:
        service.close()


@app.command("train-ranker")
def train_ranker(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Folder with impressions.jsonl + news.tsv.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the head.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without val gain.")] = 6,
    seed: int = 0,
    no_attention: Annotated[bool, typer.Option(help="Ablation: drop the user encoder.")] = False,
) -> None:
    """Train the ranking head (early stopping on a validation split)."""
    from ranking.train import TrainRankerConfig, main

    settings = _settings(ctx)
    config = TrainRankerConfig(
        data=data,
        out=out or settings.ranking.model_dir,
        cache_dir=settings.data_dir / "cache",
        epochs=epochs,
        patience=patience,
        seed=seed,
        use_attention=not no_attention,
    )
    summary = main(config)["training"]
    typer.echo(
        f"saved to {config.out}: best validation AUC {summary['best_val_auc']:.4f} "
        f"({summary['n_train']} train / {summary['n_val']} val / {summary['n_test']} held out)"
    )


@app.command("eval-ranker")
def eval_ranker(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Folder with impressions.jsonl + news.tsv.")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    model: Annotated[Path | None, typer.Option(help="Ranking head folder.")] = None,
    train_data: Annotated[
        Path | None, typer.Option(help="The head's training data (default: as recorded).")
    ] = None,
) -> None:
    """Evaluate random / popularity / content_cosine / ranker on impressions the head never saw."""
    from evaluation.ranker_eval import EvalRankerConfig, format_table, main

    settings = _settings(ctx)
    config = EvalRankerConfig(
        data=data,
        model=model or settings.ranking.model_dir,
        json_out=json_out,
        cache_dir=settings.data_dir / "cache",
        train_data=train_data,
    )
    result = main(config)
    typer.echo(format_table(result))
    typer.echo(f"wrote {json_out} and {json_out.with_suffix('.png')}")


@app.command("eval-ads")
def eval_ads(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Folder with impressions.jsonl + news.tsv.")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    model: Annotated[Path | None, typer.Option(help="Ranking head folder.")] = None,
    train_data: Annotated[
        Path | None, typer.Option(help="The head's training data (default: as recorded).")
    ] = None,
    save_head: Annotated[
        bool,
        typer.Option(
            "--save-head/--no-save-head",
            help="Save the chosen ad head to NEWSROOM_ADS__HEAD_DIR (models/ad-head), "
            "where the service loads it.",
        ),
    ] = False,
) -> None:
    """Sponsored-slot policies (random / highest_bid / ecpm / ecpm_floor) on held-out MIND
    impressions: revenue vs organic clicks lost, and the ad head's pCTR calibration."""
    from evaluation.ads import EvalAdsConfig, format_table, main

    settings = _settings(ctx)
    ads = settings.ads
    if save_head and ads.head_dir is None:
        raise typer.BadParameter(
            "set NEWSROOM_ADS__HEAD_DIR to the folder the service loads the ad head from",
            param_hint="--save-head",
        )
    config = EvalAdsConfig(
        data=data,
        model=model or settings.ranking.model_dir,
        json_out=json_out,
        cache_dir=settings.data_dir / "cache",
        train_data=train_data,
        positions=tuple(ads.positions),
        reserve_ecpm=ads.reserve_ecpm,
        exchange_rate=ads.exchange_rate,
        save_head=ads.head_dir if save_head else None,
    )
    result = main(config)
    typer.echo(format_table(result))
    typer.echo(f"wrote {json_out} and {json_out.with_suffix('.png')}")
    if config.save_head is not None:
        typer.echo(f"saved the {result['chosen_head']} ad head to {config.save_head}")


def _learning_store(settings: Settings):  # type: ignore[no-untyped-def]
    from core.learning_store import LearningStore
    from core.service import user_id_key
    from core.storage import Storage

    storage = Storage(
        settings.resolved_database_url,
        user_id_key(settings),
        timeout_s=settings.shared.database_timeout_seconds,
    )
    return storage, LearningStore(storage.engine)


@app.command()
def retrain(
    ctx: typer.Context,
    mix_mind: Annotated[
        Path | None,
        typer.Option(help="Also train on this MIND folder (impressions.jsonl + news.tsv)."),
    ] = None,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="Most recent share of feeds held out.")
    ] = 0.2,
    min_feeds: Annotated[int, typer.Option(min=10)] = 30,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    seed: int = 0,
    promote_if_better: Annotated[
        bool, typer.Option(help="Promote the challenger when it beats the champion.")
    ] = False,
) -> None:
    """Train a challenger head from the exposure log and compare it with the champion on the
    most recent logged slice (AUC, nDCG@10, off-policy top-slot CTR); registers it."""
    from core.learning import COMMITTED_HEAD, ModelRegistry
    from core.retrain import RetrainConfig
    from core.retrain import retrain as run_retrain
    from ranking.scorer import ClickScorer
    from retrieval.embedder import Embedder

    settings = _settings(ctx)
    storage, store = _learning_store(settings)
    try:
        registry = ModelRegistry(store)
        champion = registry.champion()
        if champion is not None:
            scorer = registry.scorer(champion)
        else:
            champion, scorer = COMMITTED_HEAD, ClickScorer.load(settings.ranking.model_dir)
        rc = settings.retrieval  # embedded exactly as the service embeds articles
        embedder = Embedder(
            rc.model_path(), rc.batch_size, rc.lead_words, threads=0, precision=rc.precision
        )
        config = RetrainConfig(
            work_dir=settings.data_dir / "retrain",
            cache_dir=settings.data_dir / "cache",
            mix_mind=mix_mind,
            holdout_fraction=holdout,
            min_feeds=min_feeds,
            epochs=epochs,
            seed=seed,
        )
        try:
            result = run_retrain(config, store, storage, embedder, (champion, scorer))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        typer.echo((result.report_path.with_suffix(".md")).read_text())
        typer.echo(f"registered {result.version}; report in {result.report_path.parent}")
        if result.beats_champion and promote_if_better:
            store.promote(result.version)
            typer.echo(f"promoted {result.version}: every process serves it within seconds")
        elif result.beats_champion:
            typer.echo(f"it beats {champion}: `newsroom promote {result.version}` to serve it")
        else:
            typer.echo(f"it does not beat {champion} on both AUC and nDCG@10: not promoted")
    finally:
        storage.close()


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="A version from `newsroom models`.")],
) -> None:
    """Make a registered ranking head the champion: every serving process switches to it
    (through the change log), without a restart."""
    storage, store = _learning_store(_settings(ctx))
    try:
        if not store.promote(version):
            known = ", ".join(v.version for v in store.versions()) or "none yet"
            raise typer.BadParameter(f"{version!r} is not registered (registered: {known})")
        typer.echo(f"{version} is the champion")
    finally:
        storage.close()


@app.command()
def models(ctx: typer.Context) -> None:
    """The ranking-head versions in the registry, newest first."""
    storage, store = _learning_store(_settings(ctx))
    try:
        versions = store.versions()
        if not versions:
            typer.echo("no registered versions: the committed head is served")
        for v in versions:
            m = v.report.get("metrics", {}).get("challenger", {})
            typer.echo(
                f"{v.version}  {v.status:<10}  AUC {m.get('auc')}  nDCG@10 {m.get('ndcg@10')}  "
                f"SNIPS CTR {m.get('top_slot_ctr_snips')}"
            )
    finally:
        storage.close()


@app.command("loop-sim")
def loop_sim(
    parts: Annotated[
        str, typer.Option(help="Comma-separated: retrain, ab, interleaving, bandit.")
    ] = "retrain,ab,interleaving,bandit",
    data: Annotated[
        Path | None, typer.Option(help="MIND dev impressions folder (default: ../shared/data).")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where loop_sim.json and .png go.")] = Path(
        "models/reports"
    ),
    seed: int = 0,
) -> None:
    """The learning loop on real MIND readers: (a) a head retrained from the exposure log of
    simulated days vs the committed one, offline and in an A/B day; (b) A/A false positives and
    power of the experiment test, with and without CUPED; interleaving vs A/B sample sizes;
    (c) the headline bandit's regret."""
    from evaluation.loop_sim import DEFAULT_DATA, LoopSimConfig, markdown, run

    config = LoopSimConfig(data=data or DEFAULT_DATA, out_dir=out_dir, seed=seed)
    try:
        report = run(config, parts=[p for p in parts.split(",") if p])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--parts") from exc
    typer.echo(markdown(report))
    typer.echo(f"wrote {out_dir / 'loop_sim.json'} and {out_dir / 'loop_sim.png'}")


def _serve(
    settings: Settings,
    host: str,
    port: int,
    service: NewsroomService | None,
    workers: int = 1,
) -> None:
    import uvicorn

    from api.app import create_app

    # access_log off: uvicorn logs raw paths (reader ids); api.observability logs route templates.
    if workers > 1:
        if settings.mode != "shared":
            raise typer.BadParameter(
                "--workers above 1 needs shared mode, where every process reads and writes the "
                "same state: set NEWSROOM_DATABASE_URL=postgresql+psycopg://… and "
                "NEWSROOM_REDIS_URL=redis://… (README: Deploying at scale)",
                param_hint="--workers",
            )
        if service is not None:
            service.close()  # each worker process builds its own from the environment
        # Each worker is a fresh (spawned) process that reads the same environment; uvicorn's
        # supervisor restarts one that dies.
        uvicorn.run(
            "api.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    uvicorn.run(
        create_app(settings, service), host=host, port=port, log_level="info", access_log=False
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (above 1: shared mode only).")
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    settings = _settings(ctx)
    _serve(settings, host or settings.host, port or settings.port, None, workers)


@app.command("generation-worker")
def generation_worker(
    ctx: typer.Context,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="Jobs taken at once; default generation workers x batch_size, so jobs that "
            "wait together decode as one batch.",
        ),
    ] = None,
) -> None:
    """Run generation jobs from the Redis queue (shared mode); any number, on any host."""
    from generation.worker import run_worker

    settings = _settings(ctx)
    config = settings.generation
    run_worker(settings, threads=threads or config.workers * config.batch_size)


def _prepare_generation(service: NewsroomService) -> None:
    """Convert the packaged LM (once), build the int8 copies with the adapters merged (once),
    load them, and group the replayed readers into interest segments if not done yet."""
    writing = service.require_writing()
    started = time.perf_counter()
    versions = writing.warm()
    typer.echo(f"generation models ready in {time.perf_counter() - started:.1f}s: {versions}")
    if writing.segments is None and service.storage.count_events():
        segments = writing.fit_segments()
        typer.echo(f"{len(segments.centroids)} interest segments from {segments.n_users} readers")


@app.command()
def demo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="The shared data folder.")] = Path("../shared/data"),
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
    prepare_models: Annotated[
        bool, typer.Option(help="Convert and load the generation models before serving.")
    ] = True,
) -> None:
    """Ingest the demo corpora (BBC, MIND), replay MIND readers, prepare models, serve."""
    from core.service import NewsroomService

    settings = _settings(ctx)
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    # The demo ingests first and serves one local user after: the encoder uses every core.
    service = NewsroomService.from_settings(settings, progress=True, encoder_threads=0)
    try:
        seen: set[str] = set()
        for folder, fmt in (
            ("bbc_news_summary", "bbc"),
            ("mind_demo_news", "mind"),
            ("mind_small_dev_impressions", "mind"),
        ):
            _ingest(service, data / folder, fmt, label=folder, skip_ids=seen)
        service.articles.save_index()
        if service.recommender is not None:
            _replay(service, data)
            _demo_campaigns(service)
        if prepare_models:
            _prepare_generation(service)
    except BaseException:
        service.close()
        raise
    host = host or settings.host
    port = port or settings.port
    base = f"http://{host}:{port}"
    if settings.api_keys is None and settings.api_keys_file is None:
        from api.auth import write_demo_keys

        keys_path = settings.data_dir / "api_keys"
        keys = write_demo_keys(keys_path)
        typer.echo(f"\nAPI keys (kept in {keys_path}, mode 0600; send as Authorization: Bearer):")
        for role, key in keys.items():
            typer.echo(f"  {role:<7}{key}")
        typer.echo(
            f'  e.g. curl -H "Authorization: Bearer {keys["app"]}" '
            f"{base}/v1/users/mind-76954ab64be5/feed?k=5"
        )
    typer.echo(
        f"\nNewsroom is ready with {len(service.articles.index)} articles.\n"
        f"  studio   : {base}/studio/  (paste the admin key into its API key field)\n"
        f"  API docs : {base}/docs\n"
        f"  health   : {base}/healthz\n"
        f"  search   : {base}/v1/search?q=election+results&k=5\n"
        f"  feed     : {base}/v1/users/mind-76954ab64be5/feed?k=10\n"
        f"  with ads : {base}/v1/users/mind-76954ab64be5/feed?k=10&ads=2\n"
        f"  summary  : {base}/v1/users/mind-76954ab64be5/articles/bbc-business-001/summary\n"
    )
    if serve_api:
        _serve(settings, host, port, service)
    service.close()


DEMO_CAMPAIGNS = (
    {
        "advertiser": "Trailhead Outfitters",
        "creative": {
            "title": "Running shoes built for wet trails",
            "body": "Grip, cushioning and a waterproof upper. Free returns.",
            "url": "https://example.com/trail-shoes",
            "category": "sports",
        },
        "bid_cpc": 0.8,
        "daily_budget": 40.0,
        "targeting": {"categories": ["sports"]},
        "frequency_cap": 3,
    },
    {
        "advertiser": "Harbour Bank",
        "creative": {
            "title": "A savings account that keeps up with rates",
            "body": "No fees, instant access.",
            "url": "https://example.com/savings",
            "category": "finance",
        },
        "bid_cpc": 0.5,
        "daily_budget": 25.0,
        "targeting": {"audience": "readers following markets, interest rates and money"},
    },
    {
        "advertiser": "City Arts Festival",
        "creative": {
            "title": "Ten days of music, film and theatre",
            "body": "Tickets on sale now.",
            "url": "https://example.com/festival",
            "category": "entertainment",
        },
        "bid_cpc": 0.3,
        "daily_budget": 15.0,
    },
)


def _demo_campaigns(service: NewsroomService) -> None:
    """Three example campaigns for the studio's Campaigns page and `?ads=N` (first run only)."""
    if service.campaigns.list():
        return
    for spec in DEMO_CAMPAIGNS:
        service.campaigns.create(dict(spec))
    typer.echo(f"created {len(DEMO_CAMPAIGNS)} example campaigns")


def _check_choice(value: str, allowed: tuple[str, ...], option: str) -> None:
    if value not in allowed:
        raise typer.BadParameter(f"{option} must be one of {', '.join(allowed)}", param_hint=option)


@app.command("finetune")
def finetune(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="headline | summary | draft")],
    data: Annotated[Path, typer.Option(help="BBC News Summary folder or XSum jsonl/folder.")],
    format: Annotated[str, typer.Option("--format", help="bbc | xsum")],
    out: Annotated[Path, typer.Option(help="Adapter folder (resumes from its checkpoint).")],
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 120,
    max_target_tokens: Annotated[
        int | None, typer.Option(min=8, help="Answer tokens trained on (default by task).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    learning_rate: Annotated[float, typer.Option(min=0)] = 1e-3,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    seed: int = 0,
) -> None:
    """LoRA fine-tune the base LM for one task: checkpoints, resumable, loss PNG, eval JSON."""
    from generation.finetune import TARGET_TOKENS, FinetuneConfig, main

    _check_choice(task, ("headline", "summary", "draft"), "--task")
    _check_choice(format, ("bbc", "xsum"), "--format")
    settings = _settings(ctx)
    config = FinetuneConfig(
        task=task,  # type: ignore[arg-type]
        data=data,
        format=format,  # type: ignore[arg-type]
        out=out,
        data_dir=settings.data_dir,
        base_model=settings.generation.base_model,
        rank=rank,
        alpha=2 * rank,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_steps=steps,
        max_target_tokens=max_target_tokens or TARGET_TOKENS[task],
        seed=seed,
    )
    report = main(config)
    typer.echo(
        f"saved adapter to {out}: validation loss {report['val_loss_before']:.3f} -> "
        f"{report['val_loss_after']:.3f} in {report['steps']} steps "
        f"({report['seconds_per_step']} s/step)"
    )


@app.command("eval-generation")
def eval_generation(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="headline | summary")],
    data: Annotated[Path, typer.Option(help="BBC News Summary folder or XSum jsonl/folder.")],
    format: Annotated[str, typer.Option("--format", help="bbc | xsum")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    limit: Annotated[int, typer.Option(min=1, help="Examples to score.")] = 50,
    split: Annotated[
        str, typer.Option(help="val: the fine-tune's held-out part; all: data never trained on.")
    ] = "val",
    examples: Annotated[Path | None, typer.Option(help="Also write every output (jsonl).")] = None,
) -> None:
    """Score lead / base / finetuned / served: ROUGE-1/2/L and unsupported_rate."""
    from evaluation.generation import EvalGenerationConfig, main

    _check_choice(task, ("headline", "summary"), "--task")
    _check_choice(format, ("bbc", "xsum"), "--format")
    _check_choice(split, ("val", "all"), "--split")
    settings = _settings(ctx)
    main(
        EvalGenerationConfig(
            task=task,  # type: ignore[arg-type]
            data=data,
            format=format,  # type: ignore[arg-type]
            limit=limit,
            json_out=json_out,
            data_dir=settings.data_dir,
            generation=settings.generation,
            split=split,  # type: ignore[arg-type]
            examples_out=examples,
        )
    )


@app.command("eval-checker")
def eval_checker(
    data: Annotated[Path, typer.Option(help="BBC News Summary folder.")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    limit: Annotated[int, typer.Option(min=1, help="Articles to build cases from.")] = 200,
    split: Annotated[
        str, typer.Option(help="val: the fine-tune's held-out part; all: every article.")
    ] = "val",
) -> None:
    """Precision/recall of the lexical and semantic checks on corrupted real sentences."""
    from evaluation.checker import EvalCheckerConfig, format_table, main

    _check_choice(split, ("val", "all"), "--split")
    report = main(EvalCheckerConfig(data=data, json_out=json_out, limit=limit, split=split))
    typer.echo(format_table(report))


@app.command("eval-drafts")
def eval_drafts(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="BBC News Summary folder.")],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")],
    limit: Annotated[int, typer.Option(min=1, help="Held-out drafts per system.")] = 12,
) -> None:
    """Drafts on held-out articles: model-written share, verbatim, unsupported, speed."""
    from evaluation.drafts import EvalDraftsConfig, format_table, main

    settings = _settings(ctx)
    report = main(
        EvalDraftsConfig(
            data=data,
            json_out=json_out,
            data_dir=settings.data_dir,
            generation=settings.generation,
            retrieval=settings.retrieval,
            limit=limit,
        )
    )
    typer.echo(format_table(report))


@app.command("pregenerate")
def pregenerate(
    ctx: typer.Context,
    top: Annotated[int, typer.Option(min=1, help="How many of the most-read articles.")] = 20,
    segments: Annotated[int | None, typer.Option(min=1, help="Interest segments (k).")] = None,
    refit: Annotated[bool, typer.Option(help="Re-cluster users even if segments exist.")] = False,
) -> None:
    """Cluster readers into interest segments (once) and cache personalized summaries of the
    top articles for every segment."""
    from core.service import NewsroomService

    settings = _settings(ctx)
    service = NewsroomService.from_settings(settings, progress=True)
    try:
        writing = service.require_writing()
        if refit or writing.segments is None or segments is not None:
            fitted = writing.fit_segments(segments)
            typer.echo(f"{len(fitted.centroids)} segments from {fitted.n_users} readers:")
            for index, label in enumerate(fitted.labels):
                typer.echo(f"  segment-{index}: {', '.join(label) or '(no categories)'}")
        keys: list[int] = []
        if service.recommender is not None:
            keys = service.recommender.state.popularity.top(top)
        if len(keys) < top:
            keys += [k for k in service.articles.catalog.newest(top * 2) if k not in keys]
        ids = [a.id for a in service.storage.articles_by_keys(keys[:top]).values()]
        made, hit = writing.pregenerate(ids)
        typer.echo(f"{made} summaries generated, {hit} already cached ({len(ids)} articles)")
    finally:
        service.close()


if __name__ == "__main__":
    app()
