"""Find and load a GPT-2: the bundled course models, the real GPT-2 small, or a local directory.

Returns the Hugging Face model itself (eager attention, so attention weights exist)
and its tokenizer; :func:`course.load_model` wraps the pair in the lens.
"""

from __future__ import annotations

import difflib
import os
import socket
import threading
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUNDLED = {
    "course-gpt2": ASSETS / "course-gpt2",
    "modular-addition": ASSETS / "modular-addition",
}
HUB_NAMES = ("gpt2",)


class ModelNotFoundError(FileNotFoundError):
    """Raised with a message that says which models can be loaded instead."""


def default_device(device: str | torch.device | None = None) -> torch.device:
    """The device asked for, else CUDA when present, else CPU (never MPS unless asked for)."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _hub_reachable(timeout: float = 1.0) -> bool:
    """Whether huggingface.co answers within ``timeout`` seconds (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    ok = []

    def probe():
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def resolve(name_or_path: str | os.PathLike) -> str | Path:
    """A bundled name's directory, a local directory, or a hub name; anything else raises."""
    name = str(name_or_path)
    if name in BUNDLED:
        path = BUNDLED[name]
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"The bundled model {name!r} is missing from {path}; reinstall the course "
                f"or rebuild it with `python -m course.training.train`.")
        return path
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} has no config.json: give a directory saved with save_pretrained().")
        return path
    if name in HUB_NAMES:
        return name
    known = list(BUNDLED) + list(HUB_NAMES)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise ModelNotFoundError(f"Unknown model {name!r}. {hint}Use one of {known} or a local model directory.")


def load_hf_model(name_or_path: str | os.PathLike = "course-gpt2", device=None, dtype=torch.float32):
    """(``GPT2LMHeadModel`` in eval mode with eager attention, tokenizer or None)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # no "Loading weights" bars in the notebooks
    where = resolve(name_or_path)
    kwargs = dict(attn_implementation="eager", dtype=dtype)
    if isinstance(where, str):   # a hub name: the cache first, the network only if it answers
        try:
            model = GPT2LMHeadModel.from_pretrained(where, local_files_only=True, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        except OSError:
            if not _hub_reachable():
                raise ModelNotFoundError(
                    f"{where!r} is not in the Hugging Face cache and the hub cannot be reached. "
                    "Use the bundled model instead: load_model('course-gpt2').") from None
            model = GPT2LMHeadModel.from_pretrained(where, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(where)
    else:
        model = GPT2LMHeadModel.from_pretrained(str(where), **kwargs)
        has_tok = (where / "tokenizer.json").exists() or (where / "vocab.json").exists()
        tokenizer = AutoTokenizer.from_pretrained(str(where)) if has_tok else None
    return model.to(default_device(device)).eval(), tokenizer
