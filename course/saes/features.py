"""Reading a dictionary's features: activations over a text stream, top contexts, logit effects
of decoder directions, activation histograms, and features found for a kind of token by code."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from course.neurons import top_contexts
from course.saes.activations import read_sites


@torch.no_grad()
def feature_activations(model, sae, tokens: Tensor, batch_rows: int = 64) -> Tensor:
    """``[row, pos, d_sae]`` feature activations on ``tokens [row, pos]``."""
    parts = []
    for start in range(0, tokens.shape[0], batch_rows):
        rows = tokens[start:start + batch_rows]
        parts.append(sae.encode(read_sites(model, rows, [sae.cfg.hook_name])[sae.cfg.hook_name]))
    return torch.cat(parts)


@torch.no_grad()
def decoder_logit_effects(model, sae) -> Tensor:
    """``[d_sae, d_vocab]``: each decoder direction read straight through the final layer norm
    (centred, times its weight) and the unembedding, per unit of activation (its direct path only)."""
    rows = sae.W_dec - sae.W_dec.mean(-1, keepdim=True)
    return (rows * model.ln_final_w) @ model.W_U


def feature_logit_tokens(model, sae, feature: int, k: int = 8) -> tuple[list[str], list[str]]:
    effects = decoder_logit_effects(model, sae)[feature]
    return ([model.to_string(int(i)) for i in effects.topk(k).indices],
            [model.to_string(int(i)) for i in (-effects).topk(k).indices])


def activation_histogram(acts: Tensor, feature: int, bins: int = 20) -> tuple[Tensor, Tensor]:
    """(counts [bins], edges [bins + 1]) of the feature's non-zero activations."""
    a = acts[..., feature].flatten()
    a = a[a > 0]
    if len(a) == 0:
        return torch.zeros(bins), torch.linspace(0, 1, bins + 1)
    hi = float(a.max())
    return torch.histc(a, bins, 0, hi), torch.linspace(0, hi, bins + 1)


# -- finding a feature for a kind of token -----------------------------------------------------

def token_categories(model, stream) -> dict[str, Tensor]:
    """Boolean masks ``[row, pos]`` for kinds of tokens the corpus has, decided from the text alone:
    a first name; a digit; a token of an invented country's name; the word right before a capital
    is said (the next token starts a capital in a facts sentence)."""
    from course.data import facts
    from course.data.vocabulary import single_token_names

    tokens = stream.tokens.cpu()
    names = {model.to_single_token(" " + n) for n in single_token_names(model.tokenizer)}
    strings = [model.to_string(i) for i in range(model.cfg.d_vocab)]
    digits = {i for i, s in enumerate(strings) if s.strip().isdigit() and len(s.strip()) == 1}
    country_tokens, capital_first = set(), set()
    for c in facts.countries():
        country_tokens.update(model.tokenizer(" " + c.name, add_special_tokens=False)["input_ids"])
        capital_first.add(model.tokenizer(" " + c.capital, add_special_tokens=False)["input_ids"][0])
    isin = lambda ids: torch.isin(tokens, torch.tensor(sorted(ids)))  # noqa: E731
    facts_kind = stream.kinds == stream.kind_names.index("facts")
    next_capital = torch.zeros_like(tokens, dtype=torch.bool)
    next_capital[:, :-1] = isin(capital_first)[:, 1:] & facts_kind[:, 1:]
    return {"name": isin(names), "digit": isin(digits), "country": isin(country_tokens) & facts_kind,
            "before a capital": next_capital}


@dataclass
class FoundFeature:
    category: str
    feature: int
    precision: float            # share of the feature's activation mass on tokens of the category
    recall: float               # share of the category's tokens on which the feature is active
    n_active: int

    def __str__(self) -> str:
        return (f"feature {self.feature} ({self.category}): {self.precision:.0%} of its activation falls on "
                f"{self.category} tokens; active on {self.recall:.0%} of them")


def find_feature(acts: Tensor, mask: Tensor, category: str = "", min_active: int = 20) -> FoundFeature:
    """The feature whose activation mass is most concentrated on the tokens of ``mask`` (precision),
    among features active on at least ``min_active`` tokens and on at least a tenth of the
    category's tokens; ties go to the higher recall."""
    flat = acts.reshape(-1, acts.shape[-1])
    m = mask.reshape(-1).to(flat.device)
    mass = flat.sum(0).clamp_min(1e-12)
    precision = flat[m].sum(0) / mass
    active = (flat > 0)
    recall = active[m].float().mean(0)
    ok = (active.sum(0) >= min_active) & (recall >= 0.1)
    score = torch.where(ok, precision + 1e-3 * recall, torch.full_like(precision, -1.0))
    best = int(score.argmax())
    return FoundFeature(category, best, float(precision[best]), float(recall[best]), int(active[:, best].sum()))


def find_named_features(model, stream, acts: Tensor) -> dict[str, FoundFeature]:
    """One feature per token category (:func:`token_categories`), each found by :func:`find_feature`."""
    return {name: find_feature(acts, mask, name) for name, mask in token_categories(model, stream).items()}


@dataclass
class FeatureContext:
    tokens: list[str]
    activations: list[float]
    at: int                      # index of the token where the activation was read


def feature_contexts(model, tokens: Tensor, acts: Tensor, feature: int, k: int = 8, width: int = 12) -> list[FeatureContext]:
    """The ``k`` top-activating contexts of a feature, each up to ``width`` tokens ending at the peak."""
    _, where = top_contexts(acts, feature, k)
    out = []
    for r, p in where.tolist():
        lo = max(0, p - width + 1)
        out.append(FeatureContext([model.to_string(i) for i in tokens[r, lo:p + 1].tolist()],
                                  acts[r, lo:p + 1, feature].tolist(), p - lo))
    return out
