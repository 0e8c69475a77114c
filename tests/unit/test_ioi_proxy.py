"""The IOI proxy (course.training.ioi_proxy): its stream and its runs are reproducible, its rule
reads validation figures only, and its command line says what to do when it is used wrongly."""

from __future__ import annotations

import json
import re

import pytest
import torch

from course.data.vocabulary import single_token_names
from course.training import ioi_proxy as px


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(px.ASSET))


@pytest.fixture(scope="module")
def names(tok):
    return single_token_names(tok)


def test_the_stream_is_the_same_for_the_same_chunk_and_differs_between_chunks(tok, names):
    mix = px.MIXES["three_named"]
    a = px.chunk(tok, names, mix, seed=1, chunk_id=3, n_blocks=16, block_len=64, repeat_max=20)
    b = px.chunk(tok, names, mix, seed=1, chunk_id=3, n_blocks=16, block_len=64, repeat_max=20)
    c = px.chunk(tok, names, mix, seed=1, chunk_id=4, n_blocks=16, block_len=64, repeat_max=20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (16, 64)


def test_the_carry_rule_reads_validation_figures_only():
    good_v = {"io_above_s": 0.95, "io_top_token": 0.4}
    heads = {"name_movers": ["L3H0"], "name_mover_share": 0.6, "reads_repetition": False, "s_inhibition_removed": 0.0}
    none = {"name_movers": [], "name_mover_share": 0.0, "reads_repetition": False, "s_inhibition_removed": 0.0}
    m = {"validation": good_v, "circuit_validation": heads, "test": {"io_above_s": 0.0}, "circuit_test": none}
    assert px.carried(m)                                        # test figures are never read
    assert not px.carried({**m, "validation": {**good_v, "io_top_token": 0.1}})
    assert not px.carried({**m, "circuit_validation": none})
    by_repetition = {**none, "reads_repetition": True, "s_inhibition_removed": 0.3}
    assert px.carried({**m, "circuit_validation": by_repetition})
    assert not px.carried({**m, "circuit_validation": {**by_repetition, "reads_repetition": False}})


def test_a_tiny_run_writes_its_model_log_and_figures_and_repeats_bit_for_bit(tmp_path):
    args = ["--steps", "3", "--eval-every", "2", "--d-model", "32", "--n-head", "2", "--n-layer", "2",
            "--block-len", "64", "--repeat-max", "20", "--mix", "three_named"]
    assert px.main(["--out", str(tmp_path / "a"), *args]) == 0
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["config"]["mix"] == "three_named" and result["config"]["steps"] == 3
    assert set(result) >= {"validation", "test", "circuit_validation", "circuit_test", "carried"}
    assert result["carried"] is False
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 3] and "io_top_token" in log[0]
    from safetensors.torch import load_file

    first = load_file(tmp_path / "a" / "model.safetensors")
    px.run(px.ProxyConfig(**{**result["config"], "eval_every": 0}), tmp_path / "b")
    again = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)


@pytest.mark.parametrize("argv, words", [
    ([], "give --out DIR"),
    (["--out", "x", "--mix", "nope"], "unknown mix 'nope'"),
])
def test_the_command_line_says_what_to_do(argv, words):
    with pytest.raises(SystemExit, match=re.escape(words)):
        px.main(argv)


def test_measuring_a_folder_without_a_proxy_says_so(tmp_path):
    with pytest.raises(SystemExit, match="holds no saved proxy"):
        px.main(["--measure", str(tmp_path)])
