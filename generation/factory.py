"""Builds the served models from settings: one place shared by the API, the CLI and the eval."""

from __future__ import annotations

from pathlib import Path

from core.settings import GenerationConfig
from generation.backends import BackendName, LMBackend, load_backend
from generation.batching import DecodeBatcher
from generation.lm import SMOLLM2_NAME, resolve_base_model
from generation.writer import ModelSet


def build_batcher(config: GenerationConfig) -> DecodeBatcher | None:
    """Dynamic batching for the writer where jobs run (None when `batch_size` is 1)."""
    if config.batch_size <= 1:
        return None
    return DecodeBatcher(config.batch_size, decoders=config.workers)


def build_model_set(
    config: GenerationConfig,
    data_dir: Path,
    backend: BackendName | None = None,
    adapters: dict[str, Path | None] | None = None,
) -> ModelSet:
    """Base model resolved (converted once from the packaged GGUF if needed); the task adapters
    from `config` unless `adapters` overrides them (the eval's `base` system passes None)."""

    def loader(adapter: Path | None) -> LMBackend:
        # Resolved on first use: converting the packaged GGUF takes ~25 s once, and a server
        # that never generates should not pay it at startup.
        base_dir = resolve_base_model(config.base_model, data_dir)
        return load_backend(
            backend or config.backend,
            base_dir,
            adapter,
            Path(data_dir) / "models",
            threads=config.threads_per_worker,
            workers=config.workers,
        )

    if adapters is None:
        adapters = {
            "headline": config.headline_adapter,
            "summary": config.summary_adapter,
            "draft": config.draft_adapter,
        }
    base_name = Path(config.base_model).name if config.base_model else SMOLLM2_NAME
    return ModelSet(loader, adapters, base_name=base_name)
