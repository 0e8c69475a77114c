"""Checks for chapter 7, "Attribution graphs: tracing a circuit with transcoders".

    from course.chapters.ch7_attribution_graphs import checks as check
    check.replacement_logits(replacement_logits)
"""

from __future__ import annotations

from functools import lru_cache

import torch

from course.checks.core import Case, Exercise, exercise_functions

CHAPTER = "ch7_attribution_graphs"
VISIBLE_PROMPT, HIDDEN_PROMPT = "calc: 36 + 59 = 9", "calc: 27 + 48 = 7"


def _g(seed):
    return torch.Generator().manual_seed(seed)


@lru_cache(maxsize=4)
def _rep(model, prompt: str):
    from course.attribution import LocalReplacement, load_shipped_transcoders

    return LocalReplacement.build(model, load_shipped_transcoders(), prompt)


def _prompt(hidden):
    return HIDDEN_PROMPT if hidden else VISIBLE_PROMPT


def _tc(d_in, d_sae, activation, seed):
    from course.saes import DictionaryConfig, SparseDictionary

    tc = SparseDictionary(DictionaryConfig(d_in=d_in, d_out=d_in, d_sae=d_sae, activation=activation, k=4, seed=seed))
    with torch.no_grad():
        tc.b_enc.add_(torch.randn(d_sae, generator=_g(seed + 1)) * 0.1)
        tc.b_dec.add_(torch.randn(d_in, generator=_g(seed + 2)) * 0.1)
    return tc


def _loss_cases(model, hidden):
    from course.attribution import load_shipped_transcoders
    from course.attribution.transcoders import input_site, output_site
    from course.neurons import text_stream
    from course.saes import read_sites

    g = _g(61 if hidden else 60)
    specs = [("topk", 0.2, 8)] if hidden else [("relu", 0.1, 4), ("topk", 0.3, 5)]
    cases = [Case(f"a random {a} transcoder 8 -> 8, l1_coeff={l1}",
                  (_tc(8, 24, a, s), torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), l1))
             for a, l1, s in specs]
    layer = 1 if hidden else 0
    tokens = text_stream(model, n_rows=2, row_len=16, seed=9 if hidden else 8).tokens
    acts = read_sites(model, tokens, [input_site(layer), output_site(layer)])
    cases.append(Case(f"the shipped layer-{layer} transcoder on corpus text",
                      (load_shipped_transcoders()[layer], acts[input_site(layer)].flatten(0, 1),
                       acts[output_site(layer)].flatten(0, 1), 0.0)))
    return cases


def _forward_cases(model, hidden):
    rep = _rep(model, _prompt(hidden))
    if hidden:
        return [Case(f"{HIDDEN_PROMPT!r}, the transcoders' writes without error terms",
                     (rep, rep.embedding(), rep.mlp_writes() - rep.errors))]
    return [Case(f"{VISIBLE_PROMPT!r}, its own embedding and MLP writes", (rep, rep.embedding(), rep.mlp_writes())),
            Case(f"{VISIBLE_PROMPT!r}, the MLP writes halved", (rep, rep.embedding(), rep.mlp_writes() * 0.5))]


def _edge_cases(model, hidden):
    rep = _rep(model, _prompt(hidden))
    answer = int(rep.logits[-1].argmax())
    cases = [Case(f"{_prompt(hidden)!r}, the answer's token", (rep, answer))]
    if not hidden:
        cases.append(Case(f"{VISIBLE_PROMPT!r}, the token ' 4'", (rep, model.to_single_token("4"))))
    return cases


def _dag(n, seed):
    adjacency = torch.randn(n, n, generator=_g(seed)).tril(-1)     # target after source: no cycles
    weights = torch.zeros(n)
    weights[-2:] = torch.tensor([0.7, 0.3])
    return adjacency, weights


def _influence_cases(model, hidden):
    from course.attribution import attribute
    from course.attribution.pruning import logit_weights

    graph = attribute(_rep(model, _prompt(hidden)), max_logits=2)
    cases = [Case(f"the graph of {_prompt(hidden)!r} ({graph.n_nodes} nodes, two logits)",
                  (graph.adjacency, logit_weights(graph)))]
    cases.append(Case("a random DAG of 7 nodes" if not hidden else "a random DAG of 9 nodes",
                      _dag(9 if hidden else 7, 71 if hidden else 70)))
    return cases


def _suppress_cases(model, hidden):
    from course.attribution import load_shipped_transcoders

    rep = _rep(model, _prompt(hidden))
    tcs = load_shipped_transcoders()
    answer = int(rep.logits[-1].argmax())
    # The features that write the most: a small write changes the logit so little that a sign error
    # or an added write hides inside the tolerance. One in the middle of the prompt below the last
    # layer (its write reaches the end only through attention, so subtracting it at every position
    # differs), not at BOS (whose writes every prompt shares), and one at the last position.
    last, top = rep.tokens.shape[-1] - 1, model.cfg.n_layers - 1
    active = [tuple(a) for a in (rep.activations > 0).nonzero().tolist()]
    size = {a: float(rep.activations[a] * tcs[a[0]].W_dec[a[2]].norm()) for a in active}
    by_size = sorted(active, key=lambda a: (-size[a], a))
    middle = [a for a in by_size if 0 < a[1] < last and a[0] < top]
    at_end = [a for a in by_size if a[1] == last]
    out = []
    for l, p, f in ([middle[1]] if hidden else [middle[0], at_end[0]]):
        direction = tcs[l].W_dec[f] * rep.activations[l, p, f]
        out.append(Case(f"{_prompt(hidden)!r}, feature {f} of layer {l} at position {p}",
                        (model, rep.tokens, l, p, direction, answer)))
    return out


# -- likely mistakes ------------------------------------------------------------------------

def _loss_reconstructs_input(tc, x, y, l1_coeff):
    f = tc.encode(x)
    error = (tc.decode(f) - x).pow(2).sum(-1)
    loss = error.mean() + (l1_coeff * f.abs().sum(-1).mean() if tc.cfg.activation == "relu" else 0)
    return loss, error.sum() / (x - x.mean(0)).pow(2).sum()


def _fvu_uncentred(tc, x, y, l1_coeff):
    f = tc.encode(x)
    error = (tc.decode(f) - y).pow(2).sum(-1)
    loss = error.mean() + (l1_coeff * f.abs().sum(-1).mean() if tc.cfg.activation == "relu" else 0)
    return loss, error.sum() / y.pow(2).sum()


def _loss_mean_over_dims(tc, x, y, l1_coeff):
    f = tc.encode(x)
    error = (tc.decode(f) - y).pow(2)
    loss = error.mean() + (l1_coeff * f.abs().sum(-1).mean() if tc.cfg.activation == "relu" else 0)
    return loss, error.sum() / (y - y.mean(0)).pow(2).sum()


def _loss_l1_always(tc, x, y, l1_coeff):
    f = tc.encode(x)
    error = (tc.decode(f) - y).pow(2).sum(-1)
    return error.mean() + l1_coeff * f.abs().sum(-1).mean(), error.sum() / (y - y.mean(0)).pow(2).sum()


def _fvu_over_var(tc, x, y, l1_coeff):
    f = tc.encode(x)
    error = (tc.decode(f) - y).pow(2)
    loss = error.sum(-1).mean() + (l1_coeff * f.abs().sum(-1).mean() if tc.cfg.activation == "relu" else 0)
    return loss, error.mean() / y.var()


def _live_norm(x, weight, bias):
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * weight + bias


def _forward_live_norms(rep, embedding, writes):
    m, resid = rep.model, embedding
    for l in range(rep.n_layers):
        v = torch.einsum("kd,hde->hke", _live_norm(resid, m.ln1_w[l], m.ln1_b[l]), m.W_V[l]) + m.b_V[l][:, None]
        resid = resid + torch.einsum("hqe,hed->qd", torch.einsum("hqk,hke->hqe", rep.patterns[l], v), m.W_O[l]) \
            + m.b_O[l] + writes[l]
    return _live_norm(resid, m.ln_final_w, m.ln_final_b) @ m.W_U + m.b_U


def _forward_no_value_bias(rep, embedding, writes):
    m, resid = rep.model, embedding
    for l in range(rep.n_layers):
        x = (resid - resid.mean(-1, keepdim=True)) / rep.ln1_scale[l] * m.ln1_w[l] + m.ln1_b[l]
        v = torch.einsum("kd,hde->hke", x, m.W_V[l])
        resid = resid + torch.einsum("hqe,hed->qd", torch.einsum("hqk,hke->hqe", rep.patterns[l], v), m.W_O[l]) \
            + m.b_O[l] + writes[l]
    final = (resid - resid.mean(-1, keepdim=True)) / rep.ln_final_scale * m.ln_final_w + m.ln_final_b
    return final @ m.W_U + m.b_U


def _frozen_norm(x, scale, weight, bias):
    return (x - x.mean(-1, keepdim=True)) / scale * weight + bias


def _forward(rep, embedding, writes, pattern="hqk,hke->hqe", write_first=False):
    m, resid = rep.model, embedding
    for l in range(rep.n_layers):
        if write_first:
            resid = resid + writes[l]
        v = torch.einsum("kd,hde->hke", _frozen_norm(resid, rep.ln1_scale[l], m.ln1_w[l], m.ln1_b[l]), m.W_V[l]) \
            + m.b_V[l][:, None]
        resid = resid + torch.einsum("hqe,hed->qd", torch.einsum(pattern, rep.patterns[l], v), m.W_O[l]) + m.b_O[l]
        if not write_first:
            resid = resid + writes[l]
    return _frozen_norm(resid, rep.ln_final_scale, m.ln_final_w, m.ln_final_b) @ m.W_U + m.b_U


def _forward_pattern_transposed(rep, embedding, writes):
    return _forward(rep, embedding, writes, pattern="hkq,hke->hqe")


def _forward_write_before_attention(rep, embedding, writes):
    return _forward(rep, embedding, writes, write_first=True)


def _edges(rep, token, demean=True, times_activation=True):
    e = rep.embedding().detach().requires_grad_(True)
    w = rep.mlp_writes().detach().requires_grad_(True)
    with torch.enable_grad():
        logits = rep.forward(e, w)["logits"][-1]
        ge, gw = torch.autograd.grad(logits[token] - (logits.mean() if demean else 0), [e, w])
    per_unit = torch.einsum("lpd,lfd->lpf", gw, torch.stack([tc.W_dec for tc in rep.transcoders]))
    feats = per_unit * (rep.activations if times_activation else (rep.activations > 0).float())
    return feats, (gw * rep.errors).sum(-1), (ge * e.detach()).sum(-1)


def _edges_raw_logit(rep, token):
    return _edges(rep, token, demean=False)


def _edges_gradient_only(rep, token):
    return _edges(rep, token, times_activation=False)


def _influence(adjacency, weights, absolute=True, normalise=True, minus_identity=True, transposed=False,
               clamp=True):
    W = (adjacency.abs() if absolute else adjacency).double()
    if normalise:
        total = W.abs().sum(1, keepdim=True)
        W = W / (total.clamp_min(1e-12) if clamp else total)
    eye = torch.eye(len(W), dtype=W.dtype)
    series = torch.linalg.inv(eye - W) - (eye if minus_identity else 0)
    return (series @ weights.double() if transposed else weights.double() @ series).float()


def _influence_transposed(adjacency, weights):
    return _influence(adjacency, weights, transposed=True)


def _influence_no_clamp(adjacency, weights):
    return _influence(adjacency, weights, clamp=False)


def _influence_signed(adjacency, weights):
    return _influence(adjacency, weights, absolute=False)


def _influence_unnormalised(adjacency, weights):
    return _influence(adjacency, weights, normalise=False)


def _influence_with_logits(adjacency, weights):
    return _influence(adjacency, weights, minus_identity=False)


def _suppress(model, tokens, layer, pos, direction, token, where=None, sign=-1.0, demean=True):
    def hook(x, hook):
        x = x.clone()
        x[:, pos if where is None else where] += sign * direction
        return x

    def value(logits):
        return logits[token] - (logits.mean() if demean else 0)

    before = model(tokens)[0, -1]
    return value(model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", hook)])[0, -1]) - value(before)


def _suppress_everywhere(model, tokens, layer, pos, direction, token):
    return _suppress(model, tokens, layer, pos, direction, token, where=slice(None))


def _suppress_adds(model, tokens, layer, pos, direction, token):
    return _suppress(model, tokens, layer, pos, direction, token, sign=1.0)


def _suppress_before_minus_after(model, tokens, layer, pos, direction, token):
    return -_suppress(model, tokens, layer, pos, direction, token)


def _suppress_raw_logit(model, tokens, layer, pos, direction, token):
    return _suppress(model, tokens, layer, pos, direction, token, demean=False)


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "transcoder_loss", _loss_cases, atol=1e-4, rtol=1e-4, causes=[
        (_loss_reconstructs_input, "the prediction was compared with the input x; a transcoder predicts the "
                                   "MLP's output y."),
        (_fvu_uncentred, "the FVU's denominator is the variance of y around its mean over the batch: "
                         "subtract y.mean(0) before squaring."),
        (_loss_mean_over_dims, "the squared error was averaged over the output dimensions too (as F.mse_loss "
                               "does): sum the squared error over output dimensions, then average over tokens."),
        (_loss_l1_always, "the L1 term was added for a TopK transcoder; the L1 term only applies to ReLU "
                          "(tc.cfg.activation == \"relu\")."),
        (_fvu_over_var, "the FVU was computed with y.var(), the variance of every entry around one overall "
                        "mean; the FVU is sum ||y - y_hat||^2 / sum ||y - y.mean(0)||^2, summed over tokens "
                        "and dimensions.")]),
    Exercise(CHAPTER, "replacement_logits", _forward_cases, atol=1e-3, rtol=1e-4, causes=[
        (_forward_live_norms, "the layer norms recomputed their scale from the stream; the local replacement "
                              "model divides by the frozen scales (rep.ln1_scale[l], rep.ln_final_scale)."),
        (_forward_no_value_bias, "the value bias b_V is missing: values are x @ W_V + b_V."),
        (_forward_pattern_transposed, "the attention pattern was used transposed: rep.patterns is [layer, head, "
                                      "query, key], so a query's output mixes the values over the keys "
                                      "(einsum \"hqk,hke->hqe\")."),
        (_forward_write_before_attention, "the MLP write was added before attention; in each layer attention "
                                          "reads and writes first, then the MLP adds its write.")]),
    Exercise(CHAPTER, "logit_edges", _edge_cases, atol=1e-3, rtol=1e-3, causes=[
        (_edges_raw_logit, "the target is the raw logit; subtract the mean logit (logits[token] - logits.mean())."),
        (_edges_gradient_only, "a feature's edge is its write (activation x decoder row) dotted with the gradient; "
                               "you left out the activation.")]),
    Exercise(CHAPTER, "influence", _influence_cases, atol=1e-4, rtol=1e-3, causes=[
        (_influence_signed, "influence uses absolute edge weights (|adjacency|) before normalising."),
        (_influence_unnormalised, "each target's incoming |edges| must be normalised to sum to 1 (divide each row "
                                  "by its sum)."),
        (_influence_with_logits, "the series starts at W, not at the identity: subtract I from (I - W)^-1."),
        (_influence_transposed, "the product is transposed: adjacency is [target, source] and the logit weights "
                                "are a row vector, so influence = v @ ((I - W)^-1 - I), not M @ v."),
        (_influence_no_clamp, "rows with no inputs (embeddings, error nodes) divide by 0 and give NaN: clamp "
                              "each row's sum away from 0 (.clamp_min(1e-12)) before dividing.")]),
    Exercise(CHAPTER, "suppression_effect", _suppress_cases, atol=1e-3, rtol=1e-3, causes=[
        (_suppress_everywhere, "the direction was subtracted at every position; subtract it at `pos` only."),
        (_suppress_adds, "the direction was added; suppressing a feature subtracts its write."),
        (_suppress_before_minus_after, "the sign is flipped: return the change when the feature is removed, "
                                       "after minus before."),
        (_suppress_raw_logit, "compare the demeaned logit (logits[token] - logits.mean()), before and after.")]),
]}

globals().update(exercise_functions(EXERCISES))
