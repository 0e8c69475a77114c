"""Shared fixtures: small random GPT-2s (independent of the trained model) and the course model."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import course
from course.lens import HookedGPT2
from course.models.loading import BUNDLED


def random_hf_model(n_layer=2, n_head=4, d_model=64, vocab=2048, n_ctx=64, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():   # non-trivial biases and layer-norm gains, so tests see every term
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.to(torch.device("cpu"))   # "moved to its device", as load_model does: the device audit follows it


AUDITED_NAMES = ("reference", "check", "stub", "mistake", "wrong_answer")


def pytest_collection_modifyitems(items):
    """Which in-process tests run under the device audit (tests/device_audit.py): the toolkit's unit
    tests and every test that runs an exercise's reference, stub or typical mistakes through its check.
    The rest (findings re-measured, training, parity oracles) run without it: the audit doubles the
    cost of small ops, and the student notebooks (audited in tests/test_notebooks.py) already run every
    lesson cell, findings and widgets included, under it."""
    for item in items:
        if "tests/unit/" in str(item.fspath) or any(w in item.name for w in AUDITED_NAMES):
            item.add_marker("device_audit")


@pytest.fixture(scope="session")
def device_audit():
    """The session's audit: a tensor the course makes on the CPU that meets the model's tensors
    raises as it would on a GPU. ``INSIDE_GPT2_DEVICE_AUDIT=0`` turns it off; ``=list`` lists every
    place at the end instead of raising at the first; ``=all`` audits every in-process test."""
    setting = os.environ.get("INSIDE_GPT2_DEVICE_AUDIT", "1")
    if setting == "0":
        yield None
        return
    from tests.device_audit import DeviceAudit

    audit = DeviceAudit(raise_on_mismatch=setting != "list").start()
    audit.pause()
    yield audit
    audit.stop()
    if setting == "list":
        print("\n".join(["", f"device audit: {len(set(audit.mismatches))} place(s)"] + sorted(set(audit.mismatches))))


@pytest.fixture(autouse=True)
def _audited(request, device_audit):
    if device_audit is None or not (request.node.get_closest_marker("device_audit")
                                    or os.environ.get("INSIDE_GPT2_DEVICE_AUDIT") == "all"):
        yield
        return
    device_audit.resume()
    try:
        yield
    finally:
        device_audit.pause()


@pytest.fixture(scope="session")
def tokenizer():
    from course.models.tokenizer import load_tokenizer
    from course.training.tokenizer import train_tokenizer

    path = BUNDLED["course-gpt2"]
    return load_tokenizer(path) if (path / "tokenizer.json").exists() else train_tokenizer(n_docs=5000)


def _placed(module, audit):
    """Session models are made while the audit is paused: label them as on the model's device."""
    if audit is not None:
        audit.place(module)
    return module


@pytest.fixture(scope="session")
def hf_model(device_audit):
    return _placed(random_hf_model(), device_audit)


@pytest.fixture(scope="session")
def model(tokenizer, device_audit):
    """A random 2-layer GPT-2 behind the lens (a separate HF instance from ``hf_model``)."""
    m = HookedGPT2(random_hf_model(), tokenizer, name="random-gpt2")
    _placed(m.hf, device_audit)
    return m


@pytest.fixture(scope="session")
def course_model(device_audit):
    m = course.load_model("course-gpt2", device="cpu")
    _placed(m.hf, device_audit)
    return m


@pytest.fixture(scope="session")
def m(course_model):
    """The chapter tests' name for the bundled model."""
    return course_model


@pytest.fixture
def no_grad():
    """For modules that only read the model: ``pytestmark = pytest.mark.usefixtures("no_grad")``."""
    with torch.no_grad():
        yield


@pytest.fixture
def tokens(model):
    return model.to_tokens(["When Mary and John went to the store, John gave a drink to",
                            "calc: 36 + 59 = 95"])
