"""Checks for chapter 5, "Superposition and sparse autoencoders".

    from course.chapters.ch5_superposition_saes import checks as check
    check.toy_forward(toy_forward)
"""

from __future__ import annotations

import torch

from course.checks.core import Case, Exercise, exercise_functions

CHAPTER = "ch5_superposition_saes"


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _toy_cases(model, hidden):
    g = _g(11 if hidden else 10)
    out = []
    for inst, d, n, batch in ([(3, 2, 5, 4), (1, 4, 7, 2)] if hidden else [(2, 2, 5, 3), (4, 3, 6, 1)]):
        out.append(Case(f"{inst} instances, {n} features in {d} dimensions, batch {batch}",
                        (torch.randn(inst, d, n, generator=g), torch.randn(inst, n, generator=g) * 0.3,
                         torch.rand(batch, inst, n, generator=g))))
    return out


def _loss_cases(model, hidden):
    g = _g(21 if hidden else 20)
    out = []
    for inst, n, batch in ([(2, 6, 5)] if hidden else [(3, 5, 4), (1, 4, 8)]):
        out.append(Case(f"{inst} instances, {n} features, batch {batch}",
                        (torch.rand(batch, inst, n, generator=g), torch.rand(batch, inst, n, generator=g),
                         torch.rand(inst, n, generator=g))))
    return out


def _dim_cases(model, hidden):
    g = _g(31 if hidden else 30)
    antipodal = torch.tensor([[[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]])        # a pair sharing a line, one alone
    dropped = torch.tensor([[[2.0, 0.0, 0.0, 0.78], [0.0, 0.0, 1.5, 1.04]]])  # the second feature is dropped (all 0)
    cases = [Case("an antipodal pair and a feature alone", (antipodal,))] if not hidden else []
    cases.append(Case("a dropped feature (a column of zeros), whose dimensionality is 0",
                      (dropped if not hidden else dropped.flip(-1),)))
    cases.append(Case("random W [3, 4, 9]" if not hidden else "random W [2, 3, 7]",
                      (torch.randn(*((3, 4, 9) if not hidden else (2, 3, 7)), generator=g),)))
    return cases


def _sae(d_in, d_sae, activation, k, seed):
    from course.saes import DictionaryConfig, SparseDictionary

    sae = SparseDictionary(DictionaryConfig(d_in=d_in, d_sae=d_sae, activation=activation, k=k, seed=seed))
    with torch.no_grad():      # non-zero biases, so every term is seen
        sae.b_enc.add_(torch.randn(d_sae, generator=_g(seed + 1)) * 0.1)
        sae.b_dec.add_(torch.randn(d_in, generator=_g(seed + 2)) * 0.1)
    return sae


def _encode_cases(model, hidden):
    g = _g(41 if hidden else 40)
    specs = [("topk", 3, 6), ("topk", 18, 7)] if hidden else [("relu", 0, 1), ("topk", 4, 2), ("topk", 20, 3)]
    return [Case(f"a {a} SAE 8 -> 24{f' (k={k})' if a == 'topk' else ''}", (_sae(8, 24, a, k, s), torch.randn(5, 8, generator=g)))
            for a, k, s in specs]


def _loss_sae_cases(model, hidden):
    g = _g(51 if hidden else 50)
    specs = [("relu", 0.3, 8), ("topk", 0.5, 9)] if hidden else [("relu", 0.1, 4), ("relu", 0.0, 5), ("topk", 0.2, 6)]
    return [Case(f"a {a} SAE, l1_coeff={l1}", (_sae(8, 24, a, 4, s), torch.randn(6, 8, generator=g), l1))
            for a, l1, s in specs]


def _step_cases(model, hidden):
    out = []
    for a, l1, s in ([("topk", 0.0, 13)] if hidden else [("relu", 0.05, 11), ("topk", 0.0, 12)]):
        def fresh(a=a, l1=l1, s=s):
            sae = _sae(8, 24, a, 4, s)
            return sae, torch.optim.Adam(sae.parameters(), lr=0.1), torch.randn(16, 8, generator=_g(s + 100)), l1
        out.append(Case(f"a fresh {a} SAE, Adam lr 0.1, l1_coeff={l1}", (), fresh=fresh))
        # Several steps in a row, as in training: what one step from a fresh SAE cannot show
        # (gradients left over from the last step, a decoder returned by reference).
        out.append(Case(f"3 steps in a row of a fresh {a} SAE (every step's result kept)", (), fresh=fresh, repeat=3))
    return out


def _splice_cases(model, hidden):
    from course.neurons import text_stream
    from course.saes import DictionaryConfig, SparseDictionary, load_shipped_sae

    tokens = text_stream(model, n_rows=3, row_len=16, seed=5 if hidden else 4).tokens
    random_sae = SparseDictionary(DictionaryConfig(d_in=model.cfg.d_model, d_sae=256, activation="topk", k=8,
                                                   hook_name="blocks.0.hook_resid_post", seed=3))
    return [Case("the shipped SAE on 3 rows of corpus text", (model, load_shipped_sae(), tokens)),
            Case("an untrained SAE at blocks.0.hook_resid_post", (model, random_sae, tokens[:2]))]


# -- likely mistakes ------------------------------------------------------------------------

def _toy_no_relu(W, b, x):
    return torch.einsum("bih,ihf->bif", torch.einsum("bif,ihf->bih", x, W), W) + b


def _toy_no_bias(W, b, x):
    return torch.relu(torch.einsum("bih,ihf->bif", torch.einsum("bif,ihf->bih", x, W), W))


def _loss_mean_features(out, x, importance):
    return (importance * (out - x).pow(2)).mean((0, 2))


def _loss_unweighted(out, x, importance):
    return (out - x).pow(2).mean(0).sum(-1)


def _dim_unnormalised(W):
    overlaps = torch.einsum("ihf,ihg->ifg", W, W)
    return W.norm(dim=1).pow(2) / overlaps.pow(2).sum(-1)


def _encode_relu_always(sae, x):
    return (x @ sae.W_enc + sae.b_enc).relu()


def _encode_topk_no_relu(sae, x):
    pre = x @ sae.W_enc + sae.b_enc
    if sae.cfg.activation == "relu":
        return pre.relu()
    v, i = pre.topk(sae.cfg.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, i, v)


def _encode_subtract_b_dec(sae, x):
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if sae.cfg.activation == "relu":
        return pre.relu()
    v, i = pre.topk(sae.cfg.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, i, v.relu())


def _loss_mean_over_dims(sae, x, l1_coeff):
    f = sae.encode(x)
    loss = (sae.decode(f) - x).pow(2).mean()
    return loss + (l1_coeff * f.abs().sum(-1).mean() if sae.cfg.activation == "relu" else 0)


def _loss_l1_mean_over_entries(sae, x, l1_coeff):
    f = sae.encode(x)
    loss = (sae.decode(f) - x).pow(2).sum(-1).mean()
    return loss + (l1_coeff * f.abs().mean() if sae.cfg.activation == "relu" else 0)


def _loss_l1_on_topk(sae, x, l1_coeff):
    f = sae.encode(x)
    return (sae.decode(f) - x).pow(2).sum(-1).mean() + l1_coeff * f.abs().sum(-1).mean()


def _step_variant(zero_grad: bool = True, remove_parallel: bool = True, normalise: bool = True,
                  copy: bool = True):
    """A training step with one of its parts switched off (each a typical mistake)."""
    def step(sae, optimizer, x, l1_coeff):
        with torch.enable_grad():
            if zero_grad:
                optimizer.zero_grad()
            f = sae.encode(x)
            loss = (sae.decode(f) - x).pow(2).sum(-1).mean()
            if sae.cfg.activation == "relu":
                loss = loss + l1_coeff * f.abs().sum(-1).mean()
            loss.backward()
            if remove_parallel:
                sae.remove_parallel_gradient()
            optimizer.step()
            if normalise:
                sae.normalize_decoder()
        return loss.detach(), sae.W_dec.detach().clone() if copy else sae.W_dec.detach()
    return step


def _dim_no_clamp(W):
    norms = W.norm(dim=1)
    unit = W / norms[:, None, :]
    return norms.pow(2) / torch.einsum("ihf,ihg->ifg", unit, W).pow(2).sum(-1)


def _splice_zero(model, sae, tokens):
    return model.run_with_hooks(tokens, fwd_hooks=[(sae.cfg.hook_name, lambda x, hook: torch.zeros_like(x))],
                                return_type="loss")


def _splice_clean(model, sae, tokens):
    return model(tokens, return_type="loss")


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "toy_forward", _toy_cases, atol=1e-5, rtol=1e-4, causes=[
        (_toy_no_relu, "the ReLU is missing: the model's output is ReLU(WᵀWx + b)."),
        (_toy_no_bias, "the bias b is missing: add it before the ReLU.")]),
    Exercise(CHAPTER, "importance_weighted_loss", _loss_cases, atol=1e-6, rtol=1e-5, causes=[
        (_loss_mean_features, "you averaged over the features; sum over them (average only over the batch)."),
        (_loss_unweighted, "the importance weights were left out: multiply each feature's squared error by its importance.")]),
    Exercise(CHAPTER, "feature_dimensionality", _dim_cases, atol=1e-4, rtol=1e-4, causes=[
        (_dim_unnormalised, "the dot products use W_i itself; the formula takes the unit vector Ŵ_i = W_i / ||W_i|| "
                            "in the denominator."),
        (_dim_no_clamp, "a dropped feature (a column of zeros) has norm 0, so Ŵ_i = W_i / 0 gives NaN; its "
                        "dimensionality is 0: divide by the norm clamped away from 0 (norm.clamp_min(1e-8)).")]),
    Exercise(CHAPTER, "sae_encode", _encode_cases, atol=1e-5, rtol=1e-4, causes=[
        (_encode_relu_always, "a TopK SAE keeps only the k largest pre-activations; you kept every positive one."),
        (_encode_topk_no_relu, "after TopK, apply a ReLU to the kept values (a negative one stays zero)."),
        (_encode_subtract_b_dec, "you subtracted b_dec from x before encoding. That is Anthropic's and ARENA's "
                                 "convention, but this course's SAE folds it into b_enc: the encoder is "
                                 "x @ W_enc + b_enc (see the docstring).")]),
    Exercise(CHAPTER, "sae_loss", _loss_sae_cases, atol=1e-5, rtol=1e-4, causes=[
        (_loss_mean_over_dims, "the squared error is summed over the d dimensions (then averaged over tokens), not averaged over both."),
        (_loss_l1_on_topk, "a TopK SAE has no L1 penalty: add it only when sae.cfg.activation == 'relu'."),
        (_loss_l1_mean_over_entries, "the L1 term was averaged over every feature too; like the squared error, "
                                     "sum it over the features and average over the tokens.")]),
    Exercise(CHAPTER, "training_step", _step_cases, atol=1e-5, rtol=1e-4, causes=[
        (_step_variant(normalise=False),
         "the decoder rows were not put back to unit norm after the step (sae.normalize_decoder())."),
        (_step_variant(zero_grad=False),
         "the gradients were never zeroed: each step adds its gradient to the last one's "
         "(optimizer.zero_grad() before backward())."),
        (_step_variant(copy=False),
         "the decoder you return is the live parameter, which the next step changes: "
         "return a copy (sae.W_dec.detach().clone())."),
        (_step_variant(remove_parallel=False),
         "the gradient's part along each decoder row was not removed before the step "
         "(sae.remove_parallel_gradient()).")]),
    Exercise(CHAPTER, "spliced_loss", _splice_cases, atol=1e-4, rtol=1e-4, causes=[
        (_splice_zero, "you zeroed the activation; replace it with the SAE's reconstruction, sae(x)."),
        (_splice_clean, "that is the clean model's loss: the hook on sae.cfg.hook_name must return sae(x).")]),
]}

globals().update(exercise_functions(EXERCISES))
