# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3 — Induction heads and the IOI circuit
#
# Chapter 2 read single heads from their weights. Real behaviour comes from heads working
# **together**: one head writes something into the residual stream that a later head reads
# through its queries, keys or values. This chapter studies two such circuits.
#
# **Induction** (Elhage et al. 2021, Olsson et al. 2022): on text like `… A B … A`, predict
# `B`. A previous-token head copies "the token before me was A" into the position of `B`;
# an induction head at the second `A` then finds, through its keys, the position whose
# previous token was `A`, and copies `B`.
#
# **Indirect object identification** (Wang et al. 2022): in *"When Mary and John went to the
# store, John gave a drink to"*, predict *Mary*. You will measure it with a logit difference,
# locate what matters by **activation patching** (and its fast gradient approximation,
# **attribution patching**), follow signals from head to head by **path patching**, and name
# the circuit's classes of heads in the course model, comparing them with GPT-2 small's.
# Every statement about the model is computed in front of you.

# %% tags=["module"]
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# %% tags=["setup"]
import course
from course.chapters.ch3_induction_ioi import checks as check
from course.data.repeats import repeated_batch

torch.set_grad_enabled(False)
model = course.load_model()
seq_len = 30
rep_tokens = repeated_batch(16, seq_len, range(1, model.cfg.d_vocab), model.tokenizer.bos_token_id, seed=0,
                            device=model.device)
print(f"{model.cfg.n_layers} layers x {model.cfg.n_heads} heads; repeated tokens {list(rep_tokens.shape)}: "
      f"BOS, {seq_len} random tokens, the same {seq_len} again")

# %% [markdown]
# ## Part A — induction
#
# ### 1. Loss on repeated random tokens
#
# Random tokens cannot be predicted, the first time. The second time, each one followed the
# same token before. Write the **per-token loss**: entry $i$ is $-\log p(t_{i+1} \mid t_{\le i})$,
# the loss of the prediction made at position $i$.

# %% tags=["exercise"]
def per_token_loss(model, tokens: Tensor) -> Tensor:
    """Cross-entropy of each next-token prediction.

    tokens: [batch, pos]. Returns [batch, pos - 1]; entry i is -log p(tokens[:, i + 1]) predicted at i.
    """
    # Hint: log_softmax over the vocabulary, then gather the next tokens.
    ### BEGIN SOLUTION
    logprobs = model(tokens).log_softmax(-1)[:, :-1]
    return -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
    ### END SOLUTION


# %% tags=["check"]
check.per_token_loss(per_token_loss)

# %% tags=["tests"] points=1
check.per_token_loss(per_token_loss, quiet=True).require()
### BEGIN HIDDEN TESTS
check.per_token_loss(per_token_loss, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %%
import matplotlib.pyplot as plt

from course.chapters.ch3_induction_ioi.findings import repeat_losses

losses = repeat_losses(model, rep_tokens, seq_len)
plt.figure(figsize=(8, 2.6))
plt.plot(losses["per_position"], marker=".")
plt.axvline(seq_len, color="grey", ls="--")
plt.xlabel("position of the prediction"); plt.ylabel("loss (nats)")
plt.title("per-token loss on a random sequence repeated once")
plt.show()
print(f"mean loss: first half {losses['first']:.2f}, repeated half {losses['second']:.2f} "
      f"(ratio {losses['second'] / losses['first']:.3f})")

# %% [markdown]
# ### 2. Induction scores
#
# An induction head at a token of the repeat attends to the token *after* that token's first
# occurrence: from position $q$ in the second half to $q - n + 1$, with $n$ = `seq_len`. Its
# **induction score** is that attention averaged over the second half (positions $n+1 \dots 2n$)
# and the batch.

# %% tags=["exercise"]
def induction_scores(cache, n_layers: int, seq_len: int) -> Tensor:
    """Mean attention from each second-half position q (seq_len + 1 ... 2 seq_len) to q - seq_len + 1.

    cache: of tokens [batch, 1 + 2 seq_len] (BOS, a sequence, the same again). Returns [layer, head].
    """
    # Hint: cache["pattern", layer] is [batch, head, query, key]; index it with two tensors of positions.
    ### BEGIN SOLUTION
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return torch.stack([cache["pattern", layer][:, :, q, q - seq_len + 1].mean((0, 2)) for layer in range(n_layers)])
    ### END SOLUTION


# %% tags=["check"]
check.induction_scores(induction_scores)

# %% tags=["tests"] points=1
check.induction_scores(induction_scores, quiet=True).require()
### BEGIN HIDDEN TESTS
check.induction_scores(induction_scores, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The toolkit's `course.circuits.detectors.induction_scores` computes the same from one layer's pattern; the
# rest of the chapter uses the toolkit, so it runs whatever your functions do. The induction
# heads, and the previous-token heads (chapter 2's detector, here on the first half of the
# repeated tokens, where nothing can be copied yet):

# %%
from course.chapters.ch3_induction_ioi.findings import induction_summary

_, rep_cache = model.run_with_cache(rep_tokens, names_filter=lambda n: n.endswith(("hook_pattern", "hook_z")))
ind = induction_summary(model, rep_cache, seq_len)
plt.figure(figsize=(5, 2.6))
plt.imshow(ind["induction"], cmap="Blues", vmin=0, vmax=1); plt.colorbar()
plt.xlabel("head"); plt.ylabel("layer"); plt.title("induction scores")
plt.show()
print("induction heads (score >= 0.4):", ind["induction_heads"])
print("previous-token heads (score >= 0.4):", ind["previous_heads"])

# %% [markdown]
# ### 3. Composition scores
#
# How can weights alone say that two heads work together? Write $W_{OV} = W_V W_O$ and
# $W_{QK} = W_Q W_K^\top$ (each `[d_model, d_model]`, acting on row vectors). A later head
# B reads an earlier head A's output through its queries ($W_{OV}^A W_{QK}^B$), its keys
# ($W_{OV}^A (W_{QK}^B)^\top$) or its values ($W_{OV}^A W_{OV}^B$). Elhage et al. measure how
# much of A's output B reads by the **composition score**
# $\|W_A W_B\|_F / (\|W_A\|_F \|W_B\|_F)$. Write it for many pairs at once.

# %% tags=["exercise"]
def composition_scores(W_A: Tensor, W_B: Tensor) -> Tensor:
    """Composition score of every pair: ||W_A[i] @ W_B[j]||_F / (||W_A[i]||_F ||W_B[j]||_F).

    W_A: [n_a, d, d]; W_B: [n_b, d, d]. Returns [n_a, n_b].
    """
    # Hint: torch.linalg.matrix_norm gives Frobenius norms; broadcast W_A[:, None] @ W_B[None].
    ### BEGIN SOLUTION
    product = torch.linalg.matrix_norm(W_A[:, None] @ W_B[None])
    return product / (torch.linalg.matrix_norm(W_A)[:, None] * torch.linalg.matrix_norm(W_B)[None])
    ### END SOLUTION


# %% tags=["check"]
check.composition_scores(composition_scores)

# %% tags=["tests"] points=1
check.composition_scores(composition_scores, quiet=True).require()
### BEGIN HIDDEN TESTS
check.composition_scores(composition_scores, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Every earlier head against every later head, for the three kinds, next to a baseline: the
# mean score of random matrices of the same shapes and rank ($d_{head}$). (The toolkit's
# `course.circuits.composition_scores` computes the scores without forming the products.)

# %%
from course.chapters.ch3_induction_ioi.findings import composition_report, composition_summary

comp = composition_summary(model, ind)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
ticks = range(0, len(comp["labels"]), model.cfg.n_heads)             # one label per layer's first head
for ax, kind in zip(axes, ("Q", "K", "V")):
    im = ax.imshow(comp["scores"][kind], cmap="Reds", vmin=0)
    ax.set_title(f"{kind}-composition"); ax.set_xlabel("later head"); ax.set_ylabel("earlier head")
    ax.set_xticks(ticks, [comp["labels"][i] for i in ticks], fontsize=7)
    ax.set_yticks(ticks, [comp["labels"][i] for i in ticks], fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()
print(f"random baseline over all pairs: {comp['baseline']:.3f}; each induction head with its most K-composing "
      f"previous-token head:")
for row in comp["best_pairs"]:
    print(f"previous-token head {row['prev']} -> induction head {row['induction']}: "
          + ", ".join(f"{k} {row[k]:.3f} (rank {row[k + '_rank']} of {row['n_pairs']})" for k in ("Q", "K", "V")))
print()
for line in composition_report(comp):
    print(line)

# %% [markdown]
# ### 4. Ablation
#
# Weights suggest; interventions decide. **Zero-ablate** a head (set its output `hook_z` to
# 0) or **mean-ablate** it (replace it by its mean over the batch, at each position) and
# measure the loss on the repeated half: the predictions made at positions $n+1 \dots 2n-1$
# (the first token of the repeat cannot be predicted by induction). Use `run_with_hooks`.

# %% tags=["exercise"]
def ablation_losses(model, tokens: Tensor, seq_len: int, mean_z: list | None = None) -> Tensor:
    """Mean loss on the repeated half with each head ablated, one at a time.

    tokens: [batch, 1 + 2 seq_len]. mean_z: None (zero ablation) or, per layer, the mean z
    [pos, head, d_head] that replaces the head's output. Returns [layer, head].
    """
    # Hint: a hook on f"blocks.{layer}.attn.hook_z" (z: [batch, pos, head, d_head]) that overwrites
    # one head; the loss of the predictions at positions seq_len + 1 ... 2 seq_len - 1.
    ### BEGIN SOLUTION
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            def ablate(z, hook, head=head, layer=layer):
                z = z.clone()
                z[:, :, head] = 0 if mean_z is None else mean_z[layer][:, head]
                return z

            logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", ablate)])
            logprobs = logits.log_softmax(-1)[:, seq_len + 1:-1]
            out[layer, head] = -logprobs.gather(-1, tokens[:, seq_len + 2:, None]).mean()
    return out
    ### END SOLUTION


# %% tags=["check"]
check.ablation_losses(ablation_losses)

# %% tags=["tests"] points=2
check.ablation_losses(ablation_losses, quiet=True).require()
### BEGIN HIDDEN TESTS
check.ablation_losses(ablation_losses, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Every head, zero- and mean-ablated, through the toolkit's `course.patching.patch_heads` (eight
# of the sequences; the means over all sixteen):

# %%
from course.chapters.ch3_induction_ioi.findings import ablation_report, ablation_summary

mean_z = [rep_cache["z", layer].mean(0) for layer in range(model.cfg.n_layers)]
abl = ablation_summary(model, rep_tokens[:8], seq_len, ind, mean_z)
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
for ax, kind in zip(axes, ("zero", "mean")):
    im = ax.imshow(abl[kind] - abl["clean"], cmap="Reds", vmin=0)
    ax.set_title(f"{kind} ablation: loss increase on the repeat"); ax.set_xlabel("head"); ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()
print(f"repeated-half loss, nothing ablated: {abl['clean']:.3f}")
for kind in ("zero", "mean"):
    print(f"{kind} ablation: the heads that raise it most: "
          + ", ".join(f"{h} (+{d:.2f})" for h, d in abl[f"{kind}_top"]))
print("the induction and previous-token heads found above are " + ("" if abl["circuit_matters"] else "not ")
      + "among the heads whose ablation raises the loss most")
for line in ablation_report(abl):
    print(line)

# %% [markdown]
# ### 5. When induction formed
#
# Olsson et al. saw induction heads appear suddenly in training, a **phase change** visible
# as a bump in the loss. The course model's training log recorded, at regular checkpoints,
# the loss on repeated sequences (as a ratio, repeat / first occurrence) and the best
# induction score.

# %%
from course.chapters.ch3_induction_ioi.findings import induction_formation
# The log evaluates the raw weights and their running average (what ships) at each step: one
# line per series, or the plot would zigzag between them.

formed = induction_formation()
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(formed["loss_steps"], formed["loss"], color="grey", lw=0.8, label="training loss")
ax.set_xlabel("step"); ax.set_ylabel("training loss")
ax2 = ax.twinx()
ax2.plot(formed["eval_steps"], formed["induction_score"], "b.-", label=f"best induction score ({formed['weights']}, shipped)")
ax2.plot(formed["eval_steps"], formed["loss_ratio"], "g.-", label=f"repeat loss ratio ({formed['weights']})")
for name, series in formed["other"].items():
    ax2.plot(series["eval_steps"], series["induction_score"], color="b", alpha=0.3, lw=0.8,
             label=f"best induction score ({name})")
ax2.axvline(formed["formed_at"], color="r", ls="--", label="formation")
ax2.set_ylim(0, 1.05); fig.legend(loc="center right", fontsize=7)
plt.show()
print(f"on the shipped ({formed['weights']}) weights the best induction score first passes {formed['threshold']} "
      f"at step {formed['formed_at']} (from {formed['score_before']:.2f} at step {formed['step_before']}); the "
      f"repeat loss ratio falls from {formed['ratio_before']:.2f} to {formed['ratio_after']:.2f} over that interval")

# %% [markdown]
# ## Part B — indirect object identification
#
# ### 6. The dataset
#
# `course.data.ioi_dataset` builds IOI prompts from sentence **families** (an introduction of
# two names, a re-mention of one of them, an ending) never seen in training: the model was
# trained on the `train` families, the circuit is named on `validation` and measured on
# `test`. Each sentence shape is filled with several name pairs, in both orders (IO first or
# S first), and each prompt has a corrupted **ABC** counterpart in which the second mention
# of S is a third name, so no name is repeated and nothing says which name to give.

# %%
from course.data.ioi_dataset import ioi_dataset

data = ioi_dataset(model, "test", n_groups=8, per_group=8, seed=0)
for i in (0, 1):
    print(f"clean: {data.prompts[i].text!r} -> {data.prompts[i].io!r}")
print(f"ABC:   {model.to_string(data.abc[0, 1:data.end_pos[0] + 1])!r}")
print(f"{len(data)} prompts in {len(set(data.group.tolist()))} sentence shapes; IO first in "
      f"{int((data.io_pos < data.s1_pos).sum())} of them")

# %% [markdown]
# ### 7. The logit difference, and a patching metric
#
# The model "does IOI" when it prefers IO to S: the **logit difference**
# $\text{logit}(IO) - \text{logit}(S)$ at the last token. Prompts are padded on the right, so
# each prompt's last token is at its own `end_pos`.

# %% tags=["exercise"]
def logit_diff(logits: Tensor, end_pos: Tensor, io_tok: Tensor, s_tok: Tensor) -> Tensor:
    """logit(IO) - logit(S) at each prompt's last token.

    logits: [batch, pos, d_vocab]; end_pos, io_tok, s_tok: [batch] integers. Returns [batch].
    """
    ### BEGIN SOLUTION
    last = logits[torch.arange(logits.shape[0]), end_pos]          # [batch, d_vocab]
    return last.gather(-1, io_tok[:, None])[:, 0] - last.gather(-1, s_tok[:, None])[:, 0]
    ### END SOLUTION


# %% tags=["check"]
check.logit_diff(logit_diff)

# %% tags=["tests"] points=1
check.logit_diff(logit_diff, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_diff(logit_diff, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Patching replaces activations of one run by those of another. The **normalized metric**
# puts the result on a scale where 0 is the corrupted run's mean logit difference and 1 the
# clean run's: $(LD - LD_{abc}) / (LD_{clean} - LD_{abc})$ (the toolkit's
# `course.patching.normalized`).
#
# Patching across prompts needs their positions to line up: the sweeps below use the prompts
# of one sentence shape (a group), where IO, S1, S2 and the end sit at the same positions.

# %% [markdown]
# From here on the chapter uses the toolkit's `course.patching` (its `logit_diff` is the same
# measure as yours).

# %%
from course import patching
from course.patching import normalized

ld_clean = patching.logit_diff(model(data.clean), data.end_pos, data.io_tok, data.s_tok)
ld_abc = patching.logit_diff(model(data.abc), data.end_pos, data.io_tok, data.s_tok)
print(f"logit difference: clean {ld_clean.mean():.2f} (IO preferred in {(ld_clean > 0).float().mean():.0%} "
      f"of prompts), ABC {ld_abc.mean():.2f}")

# %% [markdown]
# The logit difference asks one question: does the model score IO above S? It cannot say
# whether the model *predicts* IO: a model can push S far down and still give most of its
# probability to another word, or another name. So print the prediction beside it.

# %%
from course.chapters.ch3_induction_ioi.findings import prediction_rates, prediction_report

for line in prediction_report(prediction_rates(model, data)):
    print(line)

rows = data.group == 0
n_pos = int(data.end_pos[rows].max()) + 1
clean_tokens, abc_tokens = data.clean[rows, :n_pos], data.abc[rows, :n_pos]
end, io, s = data.end_pos[rows], data.io_tok[rows], data.s_tok[rows]
group_clean = float(patching.logit_diff(model(clean_tokens), end, io, s).mean())
group_abc = float(patching.logit_diff(model(abc_tokens), end, io, s).mean())


def ioi_metric(logits):
    return normalized(patching.logit_diff(logits, end, io, s).mean(), group_clean, group_abc)


_, clean_cache = model.run_with_cache(clean_tokens)
labels = [f"{t!r}" for t in model.to_str_tokens(clean_tokens[0])]
print(f"the group's sentence: {model.to_string(clean_tokens[0, 1:])!r}; "
      f"metric: clean {float(ioi_metric(model(clean_tokens))):.2f}, ABC {float(ioi_metric(model(abc_tokens))):.2f}")

# %% [markdown]
# ### 8. Activation patching
#
# Run the ABC prompts, and put one clean activation back. Where that alone restores the
# metric, the activation carries what the model needs. First the residual stream, at every
# layer and position: one forward pass per cell.

# %% tags=["exercise"]
def patch_resid(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor]) -> Tensor:
    """The metric with the clean residual stream (hook_resid_pre) put back at one layer and position.

    corrupt: [batch, pos] tokens. Returns [layer, pos].
    """
    ### BEGIN SOLUTION
    out = torch.zeros(model.cfg.n_layers, corrupt.shape[1])
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        for pos in range(corrupt.shape[1]):
            def restore(x, hook, pos=pos):
                x = x.clone()
                x[:, pos] = clean_cache[hook.name][:, pos]
                return x

            out[layer, pos] = metric(model.run_with_hooks(corrupt, fwd_hooks=[(name, restore)]))
    return out
    ### END SOLUTION


# %% tags=["check"]
check.patch_resid(patch_resid)

# %% tags=["tests"] points=2
check.patch_resid(patch_resid, quiet=True).require()
### BEGIN HIDDEN TESTS
check.patch_resid(patch_resid, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Now every head. A loop would run one forward pass per head. Instead, **batch** the patches:
# repeat the corrupted batch once per head of a layer, and in copy $h$ put back only head $h$'s
# clean output (`hook_z`); one forward pass then patches all the heads of a layer. Apply the
# metric to each copy's logits separately.

# %% tags=["exercise"]
def patch_every_head(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor]) -> Tensor:
    """The metric with one head's clean output put back, for every head: one forward pass per layer.

    corrupt: [batch, pos]. Returns [layer, head].
    """
    # Hint: corrupt.repeat(n_heads, 1) is [n_heads * batch, pos]; in the hook, view z as
    # [n_heads, batch, pos, head, d_head] and set z[h, :, :, h] for every h at once.
    ### BEGIN SOLUTION
    n_heads, batch = model.cfg.n_heads, corrupt.shape[0]
    heads = torch.arange(n_heads)
    out = torch.zeros(model.cfg.n_layers, n_heads)
    for layer in range(model.cfg.n_layers):
        clean_z = clean_cache["z", layer]                                   # [batch, pos, head, d_head]

        def restore(z, hook):
            z = z.view(n_heads, batch, *z.shape[1:]).clone()
            z[heads, :, :, heads] = clean_z.permute(2, 0, 1, 3)
            return z.flatten(0, 1)

        logits = model.run_with_hooks(corrupt.repeat(n_heads, 1), fwd_hooks=[(f"blocks.{layer}.attn.hook_z", restore)])
        out[layer] = torch.stack([metric(chunk) for chunk in logits.split(batch)])
    return out
    ### END SOLUTION


# %% tags=["check"]
check.patch_every_head(patch_every_head)

# %% tags=["tests"] points=2
check.patch_every_head(patch_every_head, quiet=True).require()
### BEGIN HIDDEN TESTS
check.patch_every_head(patch_every_head, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The toolkit's `course.patching.patch_sweep` does the same for every head, and for the residual
# stream, the attention outputs and the MLP outputs (one forward pass per layer for all
# positions). For heads it also skips work an exact answer does not need: it runs the ABC prompts
# once and, per layer, only what follows the patched heads; only from the first position where a
# clean and an ABC head output differ (attention is causal); and, told where the metric reads
# (`positions=end`), the last layer and the unembedding there only. `benchmarks/patching.py`
# times it against a loop of single-head patches.

# %%
exact = {"heads": patching.patch_sweep(model, abc_tokens, clean_cache, ioi_metric, "heads", positions=end)}
exact.update({what: patching.patch_sweep(model, abc_tokens, clean_cache, ioi_metric, what)
              for what in ("resid_pre", "attn_out", "mlp_out")})
fig, axes = plt.subplots(1, 4, figsize=(16, 0.35 * n_pos + 1.5), gridspec_kw={"width_ratios": [1, 1, 1, 1.2]})
for ax, what in zip(axes, ("resid_pre", "attn_out", "mlp_out")):
    ax.imshow(exact[what].T, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_title(what); ax.set_xlabel("layer"); ax.set_yticks(range(n_pos), labels, fontsize=7)
im = axes[3].imshow(exact["heads"], cmap="RdBu", vmin=-1, vmax=1)
axes[3].set_title("heads"); axes[3].set_xlabel("head"); axes[3].set_ylabel("layer")
fig.colorbar(im, ax=axes[3], shrink=0.6)
plt.show()
from course.chapters.ch3_induction_ioi.findings import patching_summary

patched = patching_summary(exact, labels)
print("residual stream: the clean value matters at", patched["resid_positions"])
print("heads whose clean output alone restores most of the metric:",
      ", ".join(f"{h} ({v:.2f})" for h, v in patched["top_heads"]))

# %% [markdown]
# ### 9. Attribution patching
#
# Patching one activation at a time costs a forward pass per cell. **Attribution patching**
# (Nanda 2023) estimates all of them at once with a first-order Taylor expansion around the
# corrupted run: the metric's change when activation $a$ goes from $a_{abc}$ to $a_{clean}$ is
# about $(a_{clean} - a_{abc}) \cdot \partial \text{metric} / \partial a$, one forward and one
# backward pass for every head. `model.run_with_cache(..., incl_bwd=True, metric=fn)` caches the
# gradient at each point as `"<name>_grad"`.

# %% tags=["exercise"]
def attribution_patch_heads(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor]) -> Tensor:
    """Gradient estimate of each head's patching effect (change of the metric from the corrupted run).

    corrupt: [batch, pos]. Returns [layer, head]: (clean z - corrupt z) · d metric / d z, summed
    over batch, positions and d_head.
    """
    ### BEGIN SOLUTION
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(corrupt, names_filter=names, incl_bwd=True, metric=metric)
    return torch.stack([((clean_cache[n] - cache[n]) * cache[n + "_grad"]).sum((0, 1, 3)) for n in names])
    ### END SOLUTION


# %% tags=["check"]
check.attribution_patch_heads(attribution_patch_heads)

# %% tags=["tests"] points=2
check.attribution_patch_heads(attribution_patch_heads, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attribution_patch_heads(attribution_patch_heads, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Against the exact patching of section 8 (the corrupted run's metric, 0, plus the estimate),
# head by head, and for the residual stream and the attention and MLP outputs, with the
# toolkit's `course.patching.attribution_sweep`:

# %%
from course.chapters.ch3_induction_ioi.findings import attribution_agreement, attribution_report, pattern_change

approx = {what: patching.attribution_sweep(model, abc_tokens, clean_cache, ioi_metric, what)
          for what in ("heads", "resid_pre", "attn_out", "mlp_out")}
agree = attribution_agreement(exact, approx, float(ioi_metric(model(abc_tokens))))
plt.figure(figsize=(4, 4))
plt.scatter(exact["heads"].flatten(), agree["estimate"]["heads"].flatten())
lim = [min(exact["heads"].min(), agree["estimate"]["heads"].min()), max(exact["heads"].max(), agree["estimate"]["heads"].max())]
plt.plot(lim, lim, "k--", lw=0.8); plt.xlabel("activation patching"); plt.ylabel("attribution patching")
plt.title("every head")
plt.show()
for what, a in agree["by_kind"].items():
    print(f"{what:10s} correlation {a['corr']:.3f}; largest error {a['max_error']:.3f} at {a['worst']} "
          f"(exact {a['worst_exact']:.3f}, estimate {a['worst_estimate']:.3f})")
for line in attribution_report(agree, pattern_change(model, clean_tokens, abc_tokens)):
    print(line)

# %% [markdown]
# ### 10. Path patching
#
# Activation patching of a head changes everything downstream of it. **Path patching** asks a
# narrower question: what does a sender write *directly* into one head's queries (or keys, or
# values)? A sender is anything that writes to the residual stream below the receiver: the
# embeddings, a head, an MLP. Take the clean stream entering the receiver's layer, add the
# senders' change (their ABC output − their clean output), recompute the layer norm on that
# patched stream, and compute only the receiver's query, key or value from it. Every other path
# stays clean; what the receiver then writes flows on through the model as usual.
#
# Write that core step: the receiver's input when the senders' change reaches it.

# %% tags=["exercise"]
def path_patched_input(clean_resid_pre: Tensor, sender_change: Tensor, model, layer: int, head: int,
                       which: str) -> Tensor:
    """Head ``(layer, head)``'s query, key or value when the senders' change reaches it and nothing else does.

    clean_resid_pre: [batch, pos, d_model], the clean stream entering ``layer``.
    sender_change: [batch, pos, d_model], the senders' corrupted output minus their clean output.
    which: "q", "k" or "v". Returns [batch, pos, d_head]: ln1 (centre, divide by the patched
    stream's own standard deviation with eps = model.hf.config.layer_norm_epsilon, then
    model.ln1_w[layer] and model.ln1_b[layer]) of the patched stream, times W_Q, W_K or W_V of
    that head, plus its bias (b_Q, b_K or b_V).
    """
    ### BEGIN SOLUTION
    resid = clean_resid_pre + sender_change
    centred = resid - resid.mean(-1, keepdim=True)
    x = centred / (centred.pow(2).mean(-1, keepdim=True) + model.hf.config.layer_norm_epsilon).sqrt()
    x = x * model.ln1_w[layer] + model.ln1_b[layer]
    W = {"q": model.W_Q, "k": model.W_K, "v": model.W_V}[which][layer, head]
    b = {"q": model.b_Q, "k": model.b_K, "v": model.b_V}[which][layer, head]
    return x @ W + b
    ### END SOLUTION


# %% tags=["check"]
check.path_patched_input(path_patched_input)

# %% tags=["tests"] points=2
check.path_patched_input(path_patched_input, quiet=True).require()
### BEGIN HIDDEN TESTS
check.path_patched_input(path_patched_input, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# `course.patching.path_patch` does this for any senders (`(layer, head)`, `"mlp0"`,
# `"embed"`) and receivers, then runs the rest of the model. Where to look? A path can only
# show something where the receiver matters and the corruption changes what it reads, so first
# every sender *together* goes into each input of the heads whose clean output restored the
# most in section 8; the receiver and input with the largest effect are kept, and then each
# sender goes in alone:

# %%
from course.chapters.ch3_induction_ioi.findings import path_patching_report, path_patching_sweep

paths = path_patching_sweep(model, data, receivers=[h for h, _ in patched["top_heads"][:3]], rows=rows)
fig, ax = plt.subplots(figsize=(12, 2.8))
grid = torch.stack([paths["removed"][x] for x in ("q", "k", "v")])
im = ax.imshow(grid, cmap="RdBu_r", vmin=-float(grid.abs().max()), vmax=float(grid.abs().max()), aspect="auto")
ax.set_yticks(range(3), ["q", "k", "v"]); ax.set_xticks(range(len(paths["senders"])), paths["senders"], rotation=90)
ax.set_title(f"each sender alone -> {paths['receiver']}: share of the logit difference removed")
fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()
for line in path_patching_report(paths):
    print(line)

# %% [markdown]
# ### 11. The circuit's classes
#
# Wang et al. named GPT-2 small's IOI circuit by classes of heads. `course.circuits.ioi`
# applies their definitions to the course model, naming heads on the validation families and
# measuring them on the test families:
#
# - **name movers**: attend from the end to IO and raise logit(IO) − logit(S) directly;
# - **S-inhibition heads**: attend to S2 and change the name movers' *queries* (path patching);
# - **subject-suppression heads** (not a Wang et al. class; like GPT-2 small's
#   copy-suppression heads): attend from the end to S2 and push S down directly;
# - **duplicate-token** and **induction heads**: attend from S2 to S1 (or S1 + 1) and send
#   to the heads that read S2, through their keys and values;
# - **faithfulness**: mean-ablating every head *outside* the circuit (over ABC prompts of the
#   same shape) should keep the logit difference.

# %%
from course.chapters.ch3_induction_ioi.findings import circuit_comparison, draw_circuit
from course.circuits.ioi import ioi_circuit

report = ioi_circuit(model, n_groups=8, per_group=8)
print(report.table())
draw_circuit(report, model.cfg.n_layers)
plt.show()

# %% [markdown]
# Against GPT-2 small, class by class; each line reads the classes found above:

# %%
for line in circuit_comparison(report):
    print("-", line)

# %% [markdown]
# ### 12. Repetition or position?
#
# A head that reads S2 from the end can find it in two ways. GPT-2 small's S-inhibition heads
# find it because it is *repeated*: duplicate-token and induction heads mark S2 as a name seen
# before, and the mark is what the S-inhibition heads' queries look for. A model can also find
# it by *position*: in every IOI sentence S2 is the last name before the end, so "attend to the
# most recent name" finds it as well. The ABC prompts tell the two apart: there the S2 slot
# holds a third name and nothing repeats. A head that reads repetition loses most of its
# attention to S2 on ABC prompts; a head that reads position keeps it. Write the measure.

# %% tags=["exercise"]
def attention_to_s2(patterns: list[Tensor], end_pos: Tensor, s2_pos: Tensor) -> Tensor:
    """Mean attention from each prompt's last token to its S2 position, for every head.

    patterns: one [batch, head, query, key] pattern per layer; end_pos, s2_pos: [batch] positions
    (prompts differ in length, so each row has its own). Returns [layer, head].
    """
    # Hint: with rows = torch.arange(len(end_pos)), pattern[rows, :, end_pos, s2_pos] is [batch, head].
    ### BEGIN SOLUTION
    rows = torch.arange(len(end_pos), device=end_pos.device)
    return torch.stack([p[rows, :, end_pos, s2_pos].mean(0) for p in patterns])
    ### END SOLUTION


# %% tags=["check"]
check.attention_to_s2(attention_to_s2)

# %% tags=["tests"] points=1
check.attention_to_s2(attention_to_s2, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_to_s2(attention_to_s2, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Now the test on the chapter's held-out prompts, for the heads that attend most to S2 on clean
# prompts: their attention on clean and on ABC prompts, and what the ratio says. (Wang et al.
# also check prompts where the repeated name is not the last one; the course's sentence
# families always put S2 last, which is exactly why position could suffice here.)

# %%
from course.chapters.ch3_induction_ioi.findings import s2_mechanism, s2_mechanism_report

mechanism = s2_mechanism(model, data)
for line in s2_mechanism_report(mechanism):
    print(line)

# %% [markdown]
# ## Widgets
#
# **Patching explorer**: pick a sentence shape, the metric and what to patch; click a cell of
# the map to see that head's attention on the first prompt (or, for a position, its token).

# %%
from course.widgets import IOIExplorer, PatchingExplorer

PatchingExplorer(model, data)

# %% [markdown]
# **IOI explorer**: type two names and a sentence (`{IO}` and `{S}` mark where they go); see
# the logit difference and how much each class of the circuit writes into it directly.

# %%
IOIExplorer(model, report)

# %% [markdown]
# ## Summary
#
# - On repeated random tokens the loss drops on the repeat; induction heads attend to the
#   token after the current token's earlier occurrence; section 3 printed which of them
#   K-compose with a previous-token head, the way they find that token.
# - Ablating those heads raises the repeated-half loss (section 4); the training log shows
#   when induction formed (section 5).
# - On IOI, activation patching locates what matters, attribution patching estimates it in one
#   backward pass (section 9 printed where that estimate is good and where it fails), path
#   patching follows signals between heads, and section 11 named this model's classes and
#   compared them with GPT-2 small's; section 12 tested whether the heads that read S2 find
#   it by repetition, as GPT-2 small's do, or by position.

# %%
print(f"Closing note: circuit faithfulness {report.figures['outside_ablated_kept']:.2f} (mean-ablating every head "
      f"outside the circuit); batched against looped patching is timed in `python benchmarks/patching.py`.")
