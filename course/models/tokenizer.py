"""The course tokenizer: byte-level BPE with a 2048-token vocabulary.

Digits are split one per token (so sums are read digit by digit), and first names
get a leading-space token each. ``<|endoftext|>`` (id 0) is BOS, EOS and padding.
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast

from course.data.vocabulary import FIRST_NAMES

VOCAB_SIZE = 2048
EOT = "<|endoftext|>"


def _training_texts(n_docs: int, seed: int):
    # Imported here: the corpus needs the final name list, which needs a tokenizer.
    from course.data.corpus import TOKENIZER_MIX, plain_sentence, text_document

    rng = random.Random(seed)
    names = tuple(FIRST_NAMES)
    for _ in range(n_docs):
        yield text_document(rng, names, TOKENIZER_MIX)
        # Extra plain sentences give every name (IOI-held-out ones too) a strong count.
        yield plain_sentence(rng, names)


def train_tokenizer(n_docs: int = 60_000, seed: int = 0) -> GPT2TokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOT], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_texts(n_docs, seed), trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT,
                             unk_token=EOT, pad_token=EOT)


def single_token_names(tokenizer) -> tuple[str, ...]:
    """The first names that encode to exactly one token with their leading space."""
    return tuple(n for n in FIRST_NAMES
                 if len(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1)


def load_tokenizer(path: str | Path) -> GPT2TokenizerFast:
    return GPT2TokenizerFast.from_pretrained(str(path))
