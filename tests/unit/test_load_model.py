"""course.load_model: the bundled model, local directories, the hub name offline, bad names."""

from __future__ import annotations

import time

import pytest
import torch

import course
from course.models.loading import ModelNotFoundError, default_device
from tests.conftest import random_hf_model


def test_bundled_model_loads_offline(course_model):
    assert course_model.cfg.n_layers >= 2
    assert course_model.device.type == "cpu"
    assert course_model.to_str_tokens(" Mary", prepend_bos=False) == [" Mary"]


def test_local_directory_loads(tmp_path, tokenizer):
    random_hf_model().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    m = course.load_model(tmp_path, device="cpu")
    assert m.cfg.d_model == 64 and m.tokenizer is not None


def test_gpt2_offline_fails_fast_naming_the_bundled_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))   # an empty cache
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="course-gpt2"):
        course.load_model("gpt2")
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("name, words", [("gtp2", "Did you mean 'gpt2'"), ("my-model", "local model directory")])
def test_unknown_names_say_what_to_use(name, words):
    with pytest.raises(ModelNotFoundError, match=words):
        course.load_model(name)


def test_directory_without_config_is_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        course.load_model(tmp_path)


def test_default_device_is_cuda_or_cpu_never_mps():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == want
    assert default_device("cpu").type == "cpu"
