"""Saving and loading dictionaries in SAE Lens's format (``cfg.json`` + ``sae_weights.safetensors``),
a fingerprint of the model weights they were trained on, and the shipped SAE.

The format is SAE Lens's, so ``sae_lens.SAE.load_from_disk(path)`` loads what we save (the
test suite checks it gives the same encodings). SAE Lens itself is not needed here.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from course.saes.model import DictionaryConfig, SparseDictionary

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "course-sae"
RETRAIN = "python -m course.training.sae"


class StaleSAEError(RuntimeError):
    """The dictionary was trained on other weights than the model's."""


def model_fingerprint(model) -> str:
    """SHA-256 (first 16 hex digits) of every parameter's name, shape and float32 bytes, in order."""
    h = hashlib.sha256()
    for name, p in sorted(model.hf.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_fresh(sae: SparseDictionary, model) -> None:
    """Raise :class:`StaleSAEError`, saying how to retrain, unless ``sae`` was trained on ``model``'s weights."""
    now = model_fingerprint(model)
    if sae.cfg.model_fingerprint != now:
        raise StaleSAEError(
            f"This SAE was trained on model weights {sae.cfg.model_fingerprint or '(unknown)'}, but the model "
            f"loaded now has weights {now}: the model changed. Retrain with: {RETRAIN}")


# The SAE Lens config format we write (the version the test suite loads it with). Without a
# version SAE Lens reads a config as pre-6.0 and drops the metadata: the hook name with it.
SAE_LENS_FORMAT = "6.54.12"


def _saelens_cfg(cfg: DictionaryConfig) -> dict:
    """SAE Lens's config keys, with ours under ``metadata`` (SAE Lens keeps unknown metadata)."""
    out = {"architecture": {"topk": "topk", "jumprelu": "jumprelu"}.get(cfg.activation, "standard"), "d_in": cfg.d_in, "d_sae": cfg.d_sae,
           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"sae_lens_version": SAE_LENS_FORMAT,
                        "sae_lens_training_version": None,      # trained by course.saes, not SAE Lens
                        "model_name": cfg.model_name, "hook_name": cfg.hook_name, "hook_head_index": None,
                        "prepend_bos": True, "context_size": 64, "model_class_name": "HookedGPT2",
                        "course": cfg.to_dict()}}
    if cfg.activation == "topk":
        out["k"] = cfg.k
    if not cfg.is_autoencoder or cfg.d_out != cfg.d_in:
        # SAE Lens has no TopK transcoder: course.saes.sae_lens_classes registers one under this name.
        out["architecture"] = {"jumprelu": "jumprelu_transcoder", "topk": "topk_transcoder"}.get(cfg.activation,
                                                                                                 "transcoder")
        out["d_out"] = cfg.d_out
        out["metadata"]["hook_name_out"] = cfg.target_hook_name
    return out


def save_sae(sae: SparseDictionary, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sae.state_dict().items()}
    if "log_threshold" in weights:          # SAE Lens's JumpReLU stores θ itself
        weights["threshold"] = weights.pop("log_threshold").exp()
    save_file(weights, path / "sae_weights.safetensors")
    (path / "cfg.json").write_text(json.dumps(_saelens_cfg(sae.cfg), indent=2) + "\n")
    return path


def load_sae(path: str | Path, device="cpu") -> SparseDictionary:
    """A dictionary saved by :func:`save_sae`, or any SAE Lens "standard"/"topk"/"jumprelu" SAE without
    input normalisation (its ``b_dec`` subtraction, if any, is folded into ``b_enc``)."""
    path = Path(path)
    raw = json.loads((path / "cfg.json").read_text())
    ours = (raw.get("metadata") or {}).get("course")
    if ours:
        cfg = DictionaryConfig(**ours)
    else:
        arch = raw.get("architecture", "standard")
        if arch not in ("standard", "topk", "jumprelu") or raw.get("normalize_activations", "none") != "none":
            raise ValueError(f"{path}: only standard, topk or jumprelu SAEs without input normalisation load here.")
        meta = raw.get("metadata") or {}
        cfg = DictionaryConfig(d_in=raw["d_in"], d_sae=raw["d_sae"], activation={"standard": "relu"}.get(arch, arch),
                               k=raw.get("k", 0), hook_name=meta.get("hook_name", ""),
                               model_name=meta.get("model_name", ""))
    weights = load_file(path / "sae_weights.safetensors")
    if raw.get("apply_b_dec_to_input", True) and not ours:
        weights["b_enc"] = weights["b_enc"] - weights["b_dec"] @ weights["W_enc"]
    sae = SparseDictionary(cfg)
    state = {k: weights[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if cfg.activation == "jumprelu":
        state["log_threshold"] = weights["threshold"].log()
    sae.load_state_dict(state)
    return sae.to(device)


def load_shipped_sae(model=None, strict: bool = False) -> SparseDictionary:
    """The SAE shipped with the course (``course/assets/course-sae``). With ``model``, its weights'
    fingerprint is compared with the SAE's: ``strict`` raises if they differ, else a warning says so."""
    if not (SHIPPED / "cfg.json").exists():
        raise FileNotFoundError(f"No shipped SAE in {SHIPPED}. Train it with: {RETRAIN}")
    sae = load_sae(SHIPPED, device=model.device if model is not None else "cpu")
    if model is not None:
        try:
            check_fresh(sae, model)
        except StaleSAEError as e:
            if strict:
                raise
            warnings.warn(str(e), stacklevel=2)
    return sae


def write_card(sae: SparseDictionary, path: str | Path) -> None:
    c, extra = sae.cfg, sae.cfg.extra
    t, ev = extra.get("training", {}), extra.get("evaluation", {})
    kind = {"topk": f"TopK (k = {c.k})", "relu": f"ReLU with L1 coefficient {c.l1_coeff}",
            "jumprelu": f"JumpReLU (L0 penalty steered to {c.k} per token)"}[c.activation]
    window = t.get("resample_every")
    dead_rule = (f"features idle for {window} steps get the AuxK loss (Gao et al. 2024)" if c.activation != "relu"
                 else f"dead features resampled every {window} steps in the first 70%")
    text = f"""# The course SAE

A sparse autoencoder on the course GPT-2's residual stream, for chapter 5.

- **Site**: `{c.hook_name}`, width {c.d_in}; **features**: {c.d_sae}; **activation**: {kind}.
- **Trained on** model weights with fingerprint `{c.model_fingerprint}` (`course.saes.io.model_fingerprint`);
  the tests fail if the bundled model's fingerprint differs.
- **Training**: {t.get('tokens_seen', 0):,} tokens of corpus text (seed {c.seed}), batches of {t.get('batch_size')},
  Adam at lr {t.get('lr')}; {dead_rule}; {t.get('seconds')} s on one CPU thread.
- **Evaluation** (held-out corpus text, {ev and '64 rows x 64 tokens'}): L0 {ev.get('l0')}, explained variance
  {ev.get('explained_variance')}, dead {ev.get('dead')}, dense (> 10% of tokens) {ev.get('dense')}, loss
  recovered {ev.get('loss_recovered')} (clean loss {ev.get('clean_loss')}, with the SAE {ev.get('spliced_loss')},
  residual stream zeroed {ev.get('zero_loss')}).

Reproduce: `{RETRAIN}` (about {t.get('seconds')} s on one thread). Format: SAE Lens's `cfg.json` +
`sae_weights.safetensors`; `sae_lens.SAE.load_from_disk("{SHIPPED.relative_to(SHIPPED.parents[2])}")` loads it.
"""
    (Path(path) / "SAE_CARD.md").write_text(text)

