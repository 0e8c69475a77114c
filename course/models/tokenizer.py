"""The course tokenizer: byte-level BPE with a 2048-token vocabulary.

Digits are split one per token (so sums are read digit by digit), and first names
get a leading-space token each. ``<|endoftext|>`` (id 0) is BOS, EOS and padding.
Training it is :mod:`course.training.tokenizer`; this module only loads it.
"""

from __future__ import annotations

from pathlib import Path

from transformers import GPT2TokenizerFast

VOCAB_SIZE = 2048
EOT = "<|endoftext|>"


def load_tokenizer(path: str | Path) -> GPT2TokenizerFast:
    return GPT2TokenizerFast.from_pretrained(str(path))
