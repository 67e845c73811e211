"""A GGUF copy of base (+ merged LoRA) for llama.cpp, cached by the adapter's content.

Optional extra: llama.cpp is not in the default install. It needs

- `llama-cpp-python` (the runtime and `llama_model_quantize`):
  `.venv/bin/pip install llama-cpp-python==0.3.36 sentencepiece -c constraints.txt`;
- llama.cpp's converter (`convert_hf_to_gguf.py`, its `conversion/` package and `gguf-py/`).
  No wheel ships it, but the llama-cpp-python sdist vendors llama.cpp at the same commit as the
  runtime, so `fetch_converter` takes it from there: `pip download llama-cpp-python==<ver>
  --no-binary :all: --no-deps` (an ordinary registry download, ~75 MB, ~1.5 min) and extracts
  only those three members (~2 MB) into `<cache_root>/tools/llama.cpp-<ver>/`, once. Converter
  and runtime then always agree on the GGUF format. `python -m generation.gguf fetch` does it
  ahead of time; NEWSROOM_LLAMA_CPP_SRC may point at a llama.cpp checkout instead.

The converter imports `sentencepiece` before it falls back to the GPT-2 style vocab SmolLM2 uses,
so that package is part of the extra too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core.files import staged_directory
from generation.lm import model_fingerprint

log = logging.getLogger(__name__)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
_VENDORED = "vendor/llama.cpp/"
_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"

# Quantizations `convert_to_gguf` knows: the converter writes f32/f16 itself, the rest are
# quantized from the f32 file by llama.cpp (name -> llama_ftype value in llama.h).
CONVERTER_TYPES = ("f32", "f16")
FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def converter_dir(cache_root: Path) -> Path:
    override = os.environ.get("NEWSROOM_LLAMA_CPP_SRC")
    if override:
        return Path(override)
    return Path(cache_root) / "tools" / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def fetch_converter(cache_root: Path) -> Path:
    """llama.cpp's HF -> GGUF converter, extracted once from the llama-cpp-python sdist."""
    out = converter_dir(cache_root)
    if (out / "convert_hf_to_gguf.py").is_file():
        return out
    log.info(
        "fetching llama.cpp's converter from the llama-cpp-python %s sdist (once)",
        LLAMA_CPP_PYTHON_VERSION,
    )
    with (
        staged_directory(out) as staging,
        tempfile.TemporaryDirectory(prefix=".sdist-", dir=out.parent) as download,
    ):
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            download,
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
        ]
        if CONSTRAINTS.is_file():
            command += ["-c", str(CONSTRAINTS)]
        subprocess.run(command, check=True)
        sdist = next(Path(download).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                _, found, inner = member.name.partition(_VENDORED)
                if not found or not inner.startswith(_MEMBERS) or not member.isfile():
                    continue
                target = staging / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    return out


def _run_converter(tools: Path, model_dir: Path, out_file: Path, outtype: str) -> None:
    command = [
        sys.executable,
        str(tools / "convert_hf_to_gguf.py"),
        str(model_dir),
        "--outfile",
        str(out_file),
        "--outtype",
        outtype,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not out_file.is_file():
        raise RuntimeError(
            f"convert_hf_to_gguf.py failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )


def quantize_gguf(source: Path, out_file: Path, quantization: str, threads: int = 0) -> None:
    """llama.cpp's own quantizer through llama-cpp-python's low-level API."""
    import ctypes

    import llama_cpp

    if quantization not in FTYPES:
        raise ValueError(f"unknown quantization {quantization!r}: one of {sorted(FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quantization]
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(out_file).encode(), ctypes.byref(params)
    )
    if status != 0 or not out_file.is_file():
        raise RuntimeError(f"llama_model_quantize({quantization}) returned {status}")


def convert_to_gguf(
    base_dir: Path, adapter_dir: Path | None, cache_root: Path, quantization: str = "q8_0"
) -> Path:
    """`<cache_root>/gguf-<fingerprint>-<quantization>/model.gguf`, built once: merge the LoRA,
    convert the HF folder to an f32 GGUF, quantize it with llama.cpp."""
    from generation.backends import _merged_model_dir

    quantization = quantization.lower()
    if quantization not in CONVERTER_TYPES and quantization not in FTYPES:
        raise ValueError(f"unknown quantization {quantization!r}")
    version = model_fingerprint(base_dir, adapter_dir)
    out = Path(cache_root) / f"gguf-{version}-{quantization}"
    if (out / "model.gguf").is_file():
        return out / "model.gguf"
    tools = fetch_converter(cache_root)
    with (
        staged_directory(out) as staging,
        tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as scratch,
    ):
        source = _merged_model_dir(base_dir, adapter_dir, Path(scratch))
        if quantization in CONVERTER_TYPES:
            _run_converter(tools, source, staging / "model.gguf", quantization)
        else:
            full = Path(scratch) / "model-f32.gguf"
            _run_converter(tools, source, full, "f32")
            quantize_gguf(full, staging / "model.gguf", quantization)
    return out / "model.gguf"


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m generation.gguf fetch")
    logging.basicConfig(level=logging.INFO)
    print(fetch_converter(Path(os.environ.get("NEWSROOM_DATA_DIR", "var")) / "models"))
