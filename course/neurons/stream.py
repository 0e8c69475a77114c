"""A fixed stream of the course corpus's text, cut into rows, with each token's document kind."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from course.data.corpus import TEXT_MIX, text_document
from course.data.vocabulary import single_token_names

KINDS = tuple(TEXT_MIX)        # "ioi", "likes", "facts", "addition"


@dataclass
class TextStream:
    """``tokens [row, pos]``: documents joined by ``<|endoftext|>`` and cut into equal rows;
    ``kinds [row, pos]``: the index in ``KINDS`` of the document each token comes from."""

    tokens: Tensor
    kinds: Tensor
    kind_names: tuple[str, ...] = KINDS


def next_document_kind(rng: random.Random) -> str:
    """The kind the next ``text_document(rng, ...)`` will be, read without using up a draw:
    a document's first draw is its kind, with ``TEXT_MIX``'s shares."""
    state = rng.getstate()
    kind = rng.choices(list(TEXT_MIX), weights=list(TEXT_MIX.values()))[0]
    rng.setstate(state)
    return kind


def text_stream(model, n_rows: int = 128, row_len: int = 64, seed: int = 0) -> TextStream:
    """``n_rows x row_len`` tokens of corpus text (no repeated random sequences), the same for a seed."""
    rng = random.Random(seed)
    names = single_token_names(model.tokenizer)
    bos = model.tokenizer.bos_token_id
    ids: list[int] = []
    kinds: list[int] = []
    while len(ids) < n_rows * row_len:
        kind = next_document_kind(rng)
        doc = [bos] + model.tokenizer(text_document(rng, names), add_special_tokens=False)["input_ids"]
        ids += doc
        kinds += [KINDS.index(kind)] * len(doc)
    n = n_rows * row_len
    return TextStream(torch.tensor(ids[:n]).view(n_rows, row_len).to(model.device),
                      torch.tensor(kinds[:n]).view(n_rows, row_len))
