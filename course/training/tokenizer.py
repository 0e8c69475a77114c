"""Train the course tokenizer (:mod:`course.models.tokenizer` describes and loads it)."""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast

from course.data.corpus import TOKENIZER_MIX, plain_sentence, text_document
from course.data.vocabulary import FIRST_NAMES
from course.models.tokenizer import EOT, VOCAB_SIZE


def _training_texts(n_docs: int, seed: int):
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
