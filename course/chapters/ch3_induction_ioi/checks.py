"""Checks for chapter 3, "Induction heads and the IOI circuit".

    from course.chapters.ch3_induction_ioi import checks as check
    check.induction_scores(induction_scores)
"""

from __future__ import annotations

from functools import lru_cache

import torch

from course.checks.core import Case, Exercise, exercise_functions
from course.data.repeats import repeated_batch

CHAPTER = "ch3_induction_ioi"


def _repeats(model, n_seqs: int, seq_len: int, seed: int):
    return repeated_batch(n_seqs, seq_len, range(1, model.cfg.d_vocab), model.tokenizer.bos_token_id, seed=seed,
                          device=model.device)


def _loss_cases(model, hidden):
    if hidden:
        return [Case("3 repeated sequences of 9", (model, _repeats(model, 3, 9, 31))),
                Case("one IOI sentence", (model, model.to_tokens("When Ann and Bob went out, Bob gave it to")))]
    return [Case("4 repeated sequences of 12", (model, _repeats(model, 4, 12, 30))),
            Case("one short prompt", (model, model.to_tokens("The cat sat")))]


def _induction_cases(model, hidden):
    out = []
    for n_seqs, seq_len in ([(3, 11), (2, 17)] if hidden else [(4, 10), (2, 15)]):
        tokens = _repeats(model, n_seqs, seq_len, 40 + seq_len)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        out.append(Case(f"{n_seqs} sequences of {seq_len}, repeated", (cache, model.cfg.n_layers, seq_len)))
    return out


def _composition_cases(model, hidden):
    g = torch.Generator().manual_seed(51 if hidden else 50)
    cases = []
    for n_a, n_b, d in ([(3, 2, 5), (1, 4, 7)] if hidden else [(2, 3, 4), (4, 4, 6)]):
        cases.append(Case(f"random W_A [{n_a}, {d}, {d}], W_B [{n_b}, {d}, {d}]",
                          (torch.randn(n_a, d, d, generator=g), torch.randn(n_b, d, d, generator=g))))
    W_OV = (model.W_V[0] @ model.W_O[0])
    W_QK = (model.W_Q[1] @ model.W_K[1].transpose(-1, -2))
    cases.append(Case("the model's layer-0 OV with layer-1 QK", (W_OV, W_QK)))
    return cases


def _ablation_cases(model, hidden):
    tokens = _repeats(model, 3, 8 if hidden else 6, 61 if hidden else 60)
    seq_len = (tokens.shape[1] - 1) // 2
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_z"))
    mean_z = [cache["z", l].mean(0) for l in range(model.cfg.n_layers)]
    return [Case(f"3 sequences of {seq_len}, zero ablation", (model, tokens, seq_len)),
            Case(f"3 sequences of {seq_len}, mean ablation", (model, tokens, seq_len, mean_z))]


def _logit_diff_cases(model, hidden):
    g = torch.Generator().manual_seed(71 if hidden else 70)
    cases = []
    for batch, pos, vocab in ([(5, 7, 11), (2, 4, 3)] if hidden else [(4, 6, 10), (3, 5, 20)]):
        logits = torch.randn(batch, pos, vocab, generator=g)
        end = torch.randint(1, pos - 1, (batch,), generator=g)              # never the last position
        io, s = torch.randint(0, vocab, (2, batch), generator=g)
        cases.append(Case(f"random logits [{batch}, {pos}, {vocab}]", (logits, end, io, s)))
    return cases


@lru_cache(maxsize=4)
def _ioi_group(model, hidden: bool):
    """A few IOI prompts of one sentence shape (positions line up), their ABC run and a metric."""
    from course.data.ioi_dataset import ioi_dataset
    from course.patching import logit_diff, normalized

    data = ioi_dataset(model, "validation", n_groups=1, per_group=4, seed=8 if hidden else 7)
    n_pos = int(data.end_pos.max()) + 1
    clean, abc = data.clean[:, :n_pos], data.abc[:, :n_pos]
    end, io, s = data.end_pos, data.io_tok, data.s_tok
    with torch.no_grad():
        ld_clean = float(logit_diff(model(clean), end, io, s).mean())
        ld_abc = float(logit_diff(model(abc), end, io, s).mean())
        _, cache = model.run_with_cache(clean)

    def metric(logits):
        return normalized(logit_diff(logits, end, io, s).mean(), ld_clean, ld_abc)

    return clean, abc, cache, metric


def _patching_cases(model, hidden):
    clean, abc, cache, metric = _ioi_group(model, hidden)
    first = model.to_string(clean[0, 1:]).strip()
    return [Case(f"4 prompts like {first!r}, ABC corrupted", (model, abc, cache, metric))]


def _s2_cases(model, hidden):
    from course.data.ioi_dataset import ioi_dataset

    # Two sentence shapes, so the prompts differ in length and each row has its own positions.
    data = ioi_dataset(model, "validation", n_groups=2, per_group=3, seed=12 if hidden else 11)
    out = []
    for run in ("clean", "abc"):
        _, cache = model.run_with_cache(getattr(data, run), names_filter=lambda n: n.endswith("hook_pattern"))
        patterns = [cache["pattern", l] for l in range(model.cfg.n_layers)]
        out.append(Case(f"{len(data)} {run} prompts of 2 shapes", (patterns, data.end_pos, data.s2_pos)))
    return out


def _path_input_cases(model, hidden):
    """A receiver's input with one sender's ABC change: the embeddings into a late head's values,
    a head into a later head's queries, an MLP into keys (the sender and input vary)."""
    from course.data.ioi_dataset import ioi_dataset
    from course.patching.paths import sender_delta

    data = ioi_dataset(model, "validation", n_groups=2, per_group=2, seed=14 if hidden else 13)
    keep = lambda n: n.endswith(("hook_z", "hook_resid_pre", "hook_mlp_out", "hook_embed", "hook_pos_embed"))  # noqa: E731
    _, clean = model.run_with_cache(data.clean, names_filter=keep)
    _, abc = model.run_with_cache(data.abc, names_filter=keep)
    last = model.cfg.n_layers - 1
    combos = ([("embed", (last, 1), "k"), ((0, 5), (2, 3), "q"), ("mlp1", (last, 6), "v")] if hidden else
              [("embed", (last, 4), "v"), ((1, 2), (last, 0), "q"), ("mlp0", (2, 7), "k")])
    cases = []
    for sender, (layer, head), which in combos:
        change = sender_delta(model, clean, abc, [sender], below=layer)
        name = sender if isinstance(sender, str) else f"L{sender[0]}H{sender[1]}"
        cases.append(Case(f"{name}'s ABC change into L{layer}H{head}'s {which}",
                          (clean["resid_pre", layer], change, model, layer, head, which)))
    return cases


# -- likely mistakes ------------------------------------------------------------------------

def _ln1(x, model, layer, affine=True):
    eps = model.hf.config.layer_norm_epsilon
    x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt()
    return x * model.ln1_w[layer] + model.ln1_b[layer] if affine else x


def _weights(model, layer, head, which):
    return (getattr(model, "W_" + which.upper())[layer, head], getattr(model, "b_" + which.upper())[layer, head])


def _path_change_after_norm(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, which)
    return (_ln1(resid, model, layer) + change) @ w + b


def _path_clean_scale(resid, change, model, layer, head, which):
    eps = model.hf.config.layer_norm_epsilon
    new = resid + change
    scale = (resid.var(-1, keepdim=True, unbiased=False) + eps).sqrt()        # the clean run's scale, reused
    w, b = _weights(model, layer, head, which)
    return ((new - new.mean(-1, keepdim=True)) / scale * model.ln1_w[layer] + model.ln1_b[layer]) @ w + b


def _path_no_affine(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, which)
    return _ln1(resid + change, model, layer, affine=False) @ w + b


def _path_no_bias(resid, change, model, layer, head, which):
    w, _ = _weights(model, layer, head, which)
    return _ln1(resid + change, model, layer) @ w


def _path_change_only(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, which)
    return _ln1(change, model, layer) @ w + b


def _path_change_subtracted(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, which)
    return _ln1(resid - change, model, layer) @ w + b


def _path_change_ignored(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, which)
    return _ln1(resid, model, layer) @ w + b


def _path_query_weights(resid, change, model, layer, head, which):
    w, b = _weights(model, layer, head, "q")
    return _ln1(resid + change, model, layer) @ w + b


def _loss_same_token(model, tokens):
    logprobs = model(tokens).log_softmax(-1)[:, :-1]
    return -logprobs.gather(-1, tokens[:, :-1, None])[..., 0]


def _induction_to_first_occurrence(cache, n_layers, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return torch.stack([cache["pattern", l][:, :, q, q - seq_len].mean((0, 2)) for l in range(n_layers)])


def _composition_unnormalized(W_A, W_B):
    return torch.linalg.matrix_norm(W_A[:, None] @ W_B[None])


def _s2_query_key_swapped(patterns, end_pos, s2_pos):
    rows = torch.arange(len(end_pos))
    return torch.stack([p[rows, :, s2_pos, end_pos].mean(0) for p in patterns])


def _s2_from_last_column(patterns, end_pos, s2_pos):
    rows = torch.arange(len(end_pos))
    return torch.stack([p[rows, :, -1, s2_pos].mean(0) for p in patterns])


def _s2_first_prompts_positions(patterns, end_pos, s2_pos):
    return torch.stack([p[:, :, int(end_pos[0]), int(s2_pos[0])].mean(0) for p in patterns])


def _s2_grid(patterns, end_pos, s2_pos):
    return torch.stack([p[:, :, end_pos][:, :, :, s2_pos].mean((0, 2, 3)) for p in patterns])


def _loss_drop_first(model, tokens):
    logp = model(tokens).log_softmax(-1)[:, 1:]
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


def _induction_query_off_by_one(cache, n_layers, seq_len):
    q = torch.arange(seq_len, 2 * seq_len)
    k = q - seq_len + 1
    return torch.stack([cache["pattern", l][:, :, q, k].mean((0, -1)) for l in range(n_layers)])


def _ablation_whole_sequence(model, tokens, seq_len, mean_z=None):
    from course.chapters.ch3_induction_ioi.findings import head_ablation_losses

    return head_ablation_losses(model, tokens, seq_len, mean_z, start=0)


def _logit_diff_last_position(logits, end_pos, io_tok, s_tok):
    rows = torch.arange(logits.shape[0])
    return logits[rows, -1, io_tok] - logits[rows, -1, s_tok]


def _patch_resid_post(model, corrupt, clean_cache, metric):
    out = torch.zeros(model.cfg.n_layers, corrupt.shape[1])
    _, clean_post = model.run_with_cache(_clean_tokens(model, corrupt),
                                         names_filter=lambda n: n.endswith("hook_resid_post"))
    for layer in range(model.cfg.n_layers):
        for pos in range(corrupt.shape[1]):
            def restore(x, hook, pos=pos):
                x = x.clone()
                x[:, pos] = clean_post[hook.name][:, pos]
                return x
            out[layer, pos] = metric(model.run_with_hooks(corrupt, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", restore)]))
    return out


def _clean_tokens(model, corrupt):
    for hidden in (False, True):
        clean, abc, _, _ = _ioi_group(model, hidden)
        if abc.shape == corrupt.shape and torch.equal(abc.cpu(), corrupt.cpu()):
            return clean
    raise ValueError("not a check case")


def _patch_all_heads_each_copy(model, corrupt, clean_cache, metric):
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        out[layer] = float(metric(model.run_with_hooks(corrupt, fwd_hooks=[(name, lambda z, hook: clean_cache[hook.name])])))
    return out


def _attribution_sign_flipped(model, corrupt, clean_cache, metric):
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(corrupt, names_filter=names, incl_bwd=True, metric=metric)
    return torch.stack([((cache[n] - clean_cache[n]) * cache[n + "_grad"]).sum((0, 1, 3)) for n in names])


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "per_token_loss", _loss_cases, atol=1e-4, rtol=1e-4, causes=[
        (_loss_same_token, "each position was scored on its own token; the prediction at i is for tokens[:, i + 1]."),
        (_loss_drop_first, "the logits were cut at the front (logits[:, 1:]); the last position has nothing to "
                           "predict, so cut there: logits[:, :-1] against tokens[:, 1:].")]),
    Exercise(CHAPTER, "induction_scores", _induction_cases, atol=1e-5, rtol=1e-4, causes=[
        (_induction_to_first_occurrence, "that is attention to the token's first occurrence (q - seq_len); an "
                                         "induction head attends to the token after it, q - seq_len + 1."),
        (_induction_query_off_by_one, "the queries start one too early: the repeat starts at position seq_len + 1 "
                                      "(after the BOS token and the first copy).")]),
    Exercise(CHAPTER, "composition_scores", _composition_cases, atol=1e-5, rtol=1e-4, causes=[
        (_composition_unnormalized, "not normalized: divide by the Frobenius norms of W_A[i] and W_B[j].")]),
    Exercise(CHAPTER, "ablation_losses", _ablation_cases, atol=1e-4, rtol=1e-4, causes=[
        (_ablation_whole_sequence, "that is the loss over the whole sequence; measure only the predictions at "
                                   "positions seq_len + 1 ... 2 seq_len - 1 (of tokens seq_len + 2 ... 2 seq_len).")]),
    Exercise(CHAPTER, "logit_diff", _logit_diff_cases, atol=1e-5, rtol=1e-5, causes=[
        (_logit_diff_last_position, "read at the last position; prompts are padded, so read each at its end_pos.")]),
    Exercise(CHAPTER, "patch_resid", _patching_cases, atol=1e-4, rtol=1e-3, causes=[
        # Patching one position of hook_resid_mid or of hook_resid_post gives the same map (the MLP
        # works position by position), so one diagnosis names both.
        (_patch_resid_post, "you patched the stream after attention or after the block (hook_resid_mid or "
                            "hook_resid_post, which give the same map); patch the stream entering each block, "
                            "blocks.{layer}.hook_resid_pre.")]),
    Exercise(CHAPTER, "patch_every_head", _patching_cases, atol=1e-4, rtol=1e-3, causes=[
        (_patch_all_heads_each_copy, "every copy got all the layer's heads back; in copy h put back only head h.")]),
    Exercise(CHAPTER, "attribution_patch_heads", _patching_cases, atol=1e-4, rtol=1e-3, causes=[
        (_attribution_sign_flipped, "the sign is flipped: the change goes from the corrupted run to the clean one, "
                                    "(clean z − corrupt z) · gradient.")]),
]}

EXERCISES["attention_to_s2"] = Exercise(CHAPTER, "attention_to_s2", _s2_cases, atol=1e-5, rtol=1e-4, causes=[
    (_s2_query_key_swapped, "query and key are swapped: pattern[batch, head, query, key] — the query is the end, "
                            "the key is S2."),
    (_s2_from_last_column, "you read the query at position -1, which is padding for the shorter prompts: use "
                           "each prompt's own end_pos."),
    (_s2_first_prompts_positions, "every prompt used the first prompt's positions; each row has its own end_pos "
                                  "and s2_pos."),
    (_s2_grid, "indexing with both position tensors at once on separate axes takes every end with every S2 "
               "(a grid); pair them row by row: pattern[rows, :, end_pos, s2_pos].")])

EXERCISES["path_patched_input"] = Exercise(CHAPTER, "path_patched_input", _path_input_cases, atol=1e-4, rtol=1e-4,
                                           causes=[
    (_path_change_after_norm, "the change was added after the layer norm; add it to the stream first, then "
                              "normalise the patched stream (the norm's scale depends on it)."),
    (_path_clean_scale, "the layer norm divided by the clean stream's scale; recompute the scale on the patched "
                        "stream, as the model would."),
    (_path_no_affine, "the layer norm's weight and bias (ln1_w, ln1_b) were left out."),
    (_path_no_bias, "the head's bias (b_Q, b_K or b_V) was left out."),
    (_path_change_only, "only the senders' change went in; the receiver reads the clean stream plus the change."),
    (_path_change_subtracted, "the change was subtracted; the patched stream is clean + (corrupt − clean)."),
    (_path_change_ignored, "the senders' change never reached the input: that is the clean input."),
    (_path_query_weights, "the query weights were used whatever `which` says; pick W_Q, W_K or W_V (and its "
                          "bias) by `which`.")])

globals().update(exercise_functions(EXERCISES))
