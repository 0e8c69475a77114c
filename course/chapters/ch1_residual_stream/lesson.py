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
# # Chapter 1 — The residual stream
#
# A transformer looks like a tall stack of layers, but it is easier to think of it as
# a single vector per token, the **residual stream**, that every layer reads from and
# adds to. Nothing is ever overwritten: the embedding writes first, then each attention
# layer and each MLP adds its own contribution. By the end the stream holds the sum of
# all those writes, and the unembedding turns it into a score for every next token.
#
# In this chapter you will
#
# 1. rebuild the forward pass of our small GPT-2 from its weight matrices, and match the
#    model's logits;
# 2. split the final residual stream into the writes that add up to it;
# 3. read the stream at every depth with the **logit lens**;
# 4. measure how much each component and each head pushes the right answer up against a
#    wrong one — **direct logit attribution** — and find which parts of the model do the work.
#
# Each exercise is a function with a stub. Fill it in, then run the check below it: it
# compares your function with the reference on several inputs and tells you in plain
# words what differs.

# %% tags=["module"]
import math

import torch
from torch import Tensor

# %% tags=["setup"]
import course
from course.chapters.ch1_residual_stream import checks as check
from course.widgets import AttributionExplorer, LogitLensExplorer, attribution_table, logit_lens_table

torch.set_grad_enabled(False)
model = course.load_model()
model

# %% [markdown]
# The line above is the model in front of you: its number of layers and of attention heads
# per layer, the width of its stream and the size of its vocabulary. It was trained by this
# course on a synthetic curriculum: short stories about people giving each other things, invented
# facts about invented countries, two-digit sums, and sequences of random tokens that
# repeat. Everything this course claims about it is measured on it, in the notebook.
#
# `model.run_with_cache` runs the model and keeps every intermediate activation under a
# name, the same names TransformerLens uses:

# %%
prompt = "When Mary and John went to the store, John gave a drink to"
tokens = model.to_tokens(prompt)
logits, cache = model.run_with_cache(tokens)
print(model.to_str_tokens(tokens))
print("next token:", repr(model.to_string(logits[0, -1].argmax())))
print([name for name in cache.keys() if name.startswith("blocks.0.")])

# %% [markdown]
# ## 1. The forward pass from the weights
#
# GPT-2 computes, for tokens $t_1 \dots t_n$:
#
# $$x^{(0)}_i = W_E[t_i] + W_{pos}[i]$$
#
# and then, for each layer $\ell$,
#
# $$x^{\text{mid}} = x + \text{Attn}_\ell(\text{LN}_1(x)), \qquad x^{\text{next}} = x^{\text{mid}} + \text{MLP}_\ell(\text{LN}_2(x^{\text{mid}}))$$
#
# and finally $\text{logits} = \text{LN}_f(x^{(L)})\, W_U$. Every block *adds* to the stream.
#
# ### Layer norm
#
# Layer norm centres a vector, divides it by its standard deviation (with a small
# $\varepsilon$ for safety), then scales and shifts each coordinate with learned weights:
# $\text{LN}(x) = \frac{x - \bar x}{\sqrt{\text{Var}(x) + \varepsilon}} \odot w + b$.
# The variance divides by $n$, not $n-1$.

# %% tags=["exercise"]
def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension.

    x: [..., d_model]; w, b: [d_model]. Returns [..., d_model].
    """
    # Hint: mean and variance over the last dimension, keepdim=True so they broadcast.
    ### BEGIN SOLUTION
    centred = x - x.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return centred / scale * w + b
    ### END SOLUTION


# %% tags=["check"]
check.layer_norm(layer_norm)

# %% tags=["tests"] points=1
check.layer_norm(layer_norm, quiet=True).require()
### BEGIN HIDDEN TESTS
check.layer_norm(layer_norm, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### Attention
#
# Each head $h$ turns the (normalized) stream into queries, keys and values,
# $q = x W_Q^h + b_Q^h$ and likewise $k$, $v$. The score of query position $i$ for key
# position $j$ is $q_i \cdot k_j / \sqrt{d_{head}}$; a position may only look at itself
# and earlier positions (the **causal mask**), and a softmax over $j$ turns scores into
# the attention pattern. The head's output at $i$ is the pattern-weighted sum of values,
# mapped back into the stream by $W_O^h$. The layer's output is the sum over heads plus
# one bias $b_O$.
#
# `model.W_Q` has shape `[layer, head, d_model, d_head]`; `model.W_O` has shape
# `[layer, head, d_head, d_model]`. `torch.einsum` keeps the indices readable.

# %% tags=["exercise"]
def attention_layer(x: Tensor, model, layer: int) -> Tensor:
    """One attention layer, all heads, from the weights.

    x: [batch, pos, d_model], the output of the layer's first layer norm.
    Returns [batch, pos, d_model]: the sum of the heads' outputs plus b_O.
    """
    # Hint: build q, k, v as [batch, head, pos, d_head]; mask the scores above the diagonal with -inf.
    ### BEGIN SOLUTION
    q = torch.einsum("bpm,hmd->bhpd", x, model.W_Q[layer]) + model.b_Q[layer][:, None]
    k = torch.einsum("bpm,hmd->bhpd", x, model.W_K[layer]) + model.b_K[layer][:, None]
    v = torch.einsum("bpm,hmd->bhpd", x, model.W_V[layer]) + model.b_V[layer][:, None]
    scores = q @ k.transpose(-1, -2) / math.sqrt(model.cfg.d_head)
    n = x.shape[1]
    future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
    pattern = scores.masked_fill(future, float("-inf")).softmax(-1)
    z = pattern @ v                                                     # [batch, head, pos, d_head]
    return torch.einsum("bhpd,hdm->bpm", z, model.W_O[layer]) + model.b_O[layer]
    ### END SOLUTION


# %% tags=["check"]
check.attention_layer(attention_layer)

# %% tags=["tests"] points=2
check.attention_layer(attention_layer, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_layer(attention_layer, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### The MLP
#
# The MLP maps each position on its own: up to `d_mlp = 512` neurons, a GELU, back down.
# GPT-2's GELU is the tanh approximation
# $\text{GELU}(x) \approx \tfrac12 x\left(1 + \tanh\!\left(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\right)\right)$.

# %% tags=["exercise"]
def mlp_layer(x: Tensor, model, layer: int) -> Tensor:
    """One MLP layer from the weights.

    x: [batch, pos, d_model], the output of the layer's second layer norm.
    Returns [batch, pos, d_model].
    """
    # Hint: model.W_in is [layer, d_model, d_mlp]; model.W_out is [layer, d_mlp, d_model].
    ### BEGIN SOLUTION
    pre = x @ model.W_in[layer] + model.b_in[layer]
    post = 0.5 * pre * (1 + torch.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre.pow(3))))
    return post @ model.W_out[layer] + model.b_out[layer]
    ### END SOLUTION


# %% tags=["check"]
check.mlp_layer(mlp_layer)

# %% tags=["tests"] points=1
check.mlp_layer(mlp_layer, quiet=True).require()
### BEGIN HIDDEN TESTS
check.mlp_layer(mlp_layer, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### The whole model
#
# Now put the pieces together. Use your own `layer_norm`, `attention_layer` and
# `mlp_layer`; the layer-norm weights are `model.ln1_w`, `model.ln1_b`, `model.ln2_w`,
# `model.ln2_b` (each `[layer, d_model]`) and `model.ln_final_w`, `model.ln_final_b`.

# %% tags=["exercise"]
def forward_from_weights(tokens: Tensor, model) -> Tensor:
    """GPT-2's forward pass from its weights.

    tokens: [batch, pos] token ids. Returns logits [batch, pos, d_vocab].
    """
    # Hint: start from W_E[tokens] + W_pos[:pos]; each block adds to the stream twice.
    ### BEGIN SOLUTION
    resid = model.W_E[tokens] + model.W_pos[: tokens.shape[1]]
    for layer in range(model.cfg.n_layers):
        resid = resid + attention_layer(layer_norm(resid, model.ln1_w[layer], model.ln1_b[layer]), model, layer)
        resid = resid + mlp_layer(layer_norm(resid, model.ln2_w[layer], model.ln2_b[layer]), model, layer)
    return layer_norm(resid, model.ln_final_w, model.ln_final_b) @ model.W_U
    ### END SOLUTION


# %% tags=["check"]
check.forward_from_weights(forward_from_weights)

# %% tags=["tests"] points=2
check.forward_from_weights(forward_from_weights, quiet=True).require()
### BEGIN HIDDEN TESTS
check.forward_from_weights(forward_from_weights, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The residual stream as a sum
#
# Because every block only adds, the final stream is exactly the sum of the writes:
# the token embedding, the position embedding, and each layer's attention output and
# MLP output. The cache holds each of them (`hook_embed`, `hook_pos_embed`,
# `blocks.{l}.hook_attn_out`, `blocks.{l}.hook_mlp_out`). Stack them in that order.

# %% tags=["exercise"]
def residual_components(cache, model) -> Tensor:
    """The writes that sum to the final residual stream.

    Returns [2 + 2 * n_layers, batch, pos, d_model], in the order: token embedding,
    position embedding, then attn_out and mlp_out of layer 0, of layer 1, ...
    """
    # Hint: the cache holds hook_embed, hook_pos_embed and each layer's attn_out and mlp_out, all [batch, pos, d_model].
    ### BEGIN SOLUTION
    embed = cache["hook_embed"]
    parts = [embed, cache["hook_pos_embed"]]
    for layer in range(model.cfg.n_layers):
        parts += [cache["attn_out", layer], cache["mlp_out", layer]]
    return torch.stack(parts)
    ### END SOLUTION


# %% tags=["check"]
check.residual_components(residual_components)

# %% tags=["tests"] points=1
check.residual_components(residual_components, quiet=True).require()
### BEGIN HIDDEN TESTS
check.residual_components(residual_components, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The sum is not an approximation. Here it is, checked with the toolkit's own
# decomposition against the stream after the last block:

# %%
parts = cache.decompose_resid()
final = cache["resid_post", model.cfg.n_layers - 1]
print("largest difference:", (parts.sum(0) - final).abs().max().item())
print("size of each write at the last position:",
      {name: round(v, 1) for name, v in zip(["embed", "pos"] + [f"{k}{l}" for l in range(model.cfg.n_layers)
                                                                 for k in ("attn", "mlp")],
                                             parts[:, 0, -1].norm(dim=-1).tolist())})

# %% [markdown]
# ## 3. The logit lens
#
# If the stream is a running sum, we can ask what the model "would say" if it stopped
# early: take the stream before layer $\ell$, put it through the **final** layer norm
# and the unembedding as if it were the last layer. Each partial stream gets its own
# layer-norm statistics — it is normalized as if it were final. Row 0 is the embeddings
# alone, and the last row must be the model's real output.

# %% tags=["exercise"]
def logit_lens(cache, model, pos: int = -1) -> Tensor:
    """Decode the residual stream before each layer (and after the last) as if it were final.

    Returns [n_layers + 1, batch, d_vocab] at position ``pos``. Row 0 is the embedding
    alone; row n_layers is the model's real output.
    """
    # Hint: cache.accumulated_resid(pos=pos) gives the stream before each layer and after the last;
    # what does the model do to the stream before the unembedding?
    ### BEGIN SOLUTION
    resid = cache.accumulated_resid(pos=pos)            # [layer, batch, d_model]
    return cache.apply_ln_final(resid) @ model.W_U      # the same map the model uses at the end
    ### END SOLUTION


# %% tags=["check"]
check.logit_lens(logit_lens)

# %% tags=["tests"] points=2
check.logit_lens(logit_lens, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_lens(logit_lens, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The explorer below runs the logit lens on any prompt: each cell is the top token at
# that depth and position, shaded by its probability. Hover over a cell for its top
# five, or pick a layer and a position. It starts on a fact about one of the model's
# invented countries; try a sum (`calc: 36 + 59 =`) or a story too.

# %%
from course.data import facts as kb

country = kb.countries()[0]
print(f"{country.name}: capital {country.capital}, language {country.language}, sport {country.sport}")
LogitLensExplorer(model, f"The capital of {country.name} is")

# %% [markdown]
# ### A finding: when does a fact become the answer?
#
# Take every fact the model knows ("The capital of X is" → the capital) and ask at which
# depth the answer first becomes the logit lens's top token. The cell computes it over
# all invented countries; the numbers are the model's, not ours.

# %%
from course.chapters.ch1_residual_stream.findings import fact_emergence

emergence = fact_emergence(model, relation="capital")
for depth, share in emergence.items():
    print(f"answer first on top {depth:>12s}: {share:6.1%} of {len(kb.countries())} facts")

# %% [markdown]
# "First on top" only sees the top token. The lens can fail in two ways: the answer may be
# there but not yet on top, or the lens may be reading the early stream in a basis it was
# never meant for (the unembedding is trained on the *last* layer's output). The rank of the
# answer at each depth, and what the lens puts on top instead, tell these apart:

# %%
from course.chapters.ch1_residual_stream.findings import fact_rank_curve, rank_report

for line in rank_report(fact_rank_curve(model, relation="capital")):
    print(line)

# %% [markdown]
# Where the plain lens only echoes the current token, it says nothing about what the early
# layers know. A **tuned lens** (Belrose et al. 2023) learns one small map per layer that
# translates the stream into the last layer's basis before unembedding, and often finds the
# answer layers earlier; the plain lens is the special case with no translation.

# %% [markdown]
# ## 4. Direct logit attribution
#
# The final layer norm is almost linear: it subtracts the mean, multiplies by its weight
# and divides by one number per position, the **scale**. If we freeze that scale at the
# value the model really used, the normalized stream is a sum of normalized writes, and
# the logit of any token is a sum of contributions, one per component.
#
# To explain *why* the model prefers the right answer to a plausible wrong one, project
# onto the **logit difference direction** $W_U[:, \text{answer}] - W_U[:, \text{wrong}]$.
# In the IOI prompt "When Mary and John went to the store, John gave a drink to", the
# answer is " Mary" and the wrong one is " John".

# %% tags=["exercise"]
def logit_diff_direction(model, answer: Tensor, counterfactual: Tensor) -> Tensor:
    """The unembedding direction of logit(answer) - logit(counterfactual).

    answer, counterfactual: [batch] token ids. Returns [batch, d_model].
    """
    ### BEGIN SOLUTION
    return (model.W_U[:, answer] - model.W_U[:, counterfactual]).T
    ### END SOLUTION


# %% tags=["check"]
check.logit_diff_direction(logit_diff_direction)

# %% tags=["tests"] points=1
check.logit_diff_direction(logit_diff_direction, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_diff_direction(logit_diff_direction, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Now attribute. `cache.apply_ln_to_stack(stack, pos)` centres each component, divides by
# the cached final scale and multiplies by the layer norm's weight; the components then
# sum (plus the layer norm's bias) to the normalized final stream.

# %% tags=["exercise"]
def component_attribution(cache, model, answer: Tensor, counterfactual: Tensor, pos: int = -1) -> Tensor:
    """Each residual-stream write's direct contribution to logit(answer) - logit(counterfactual).

    Returns [2 + 2 * n_layers, batch] at position ``pos``, in the order of ``residual_components``.
    """
    # Hint: decompose the stream at pos, freeze the final layer norm's scale, project on the direction.
    ### BEGIN SOLUTION
    stack = cache.apply_ln_to_stack(cache.decompose_resid(pos=pos), pos=pos)   # [comp, batch, d_model]
    return (stack * logit_diff_direction(model, answer, counterfactual)).sum(-1)
    ### END SOLUTION


# %% tags=["check"]
check.component_attribution(component_attribution)

# %% tags=["tests"] points=2
check.component_attribution(component_attribution, quiet=True).require()
### BEGIN HIDDEN TESTS
check.component_attribution(component_attribution, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"]
def head_attribution(cache, model, answer: Tensor, counterfactual: Tensor, pos: int = -1) -> Tensor:
    """Each attention head's direct contribution to logit(answer) - logit(counterfactual).

    Returns [n_layers, n_heads, batch] at position ``pos``.
    """
    # Hint: cache.stack_head_results(pos=pos) is [layer * head, batch, d_model].
    ### BEGIN SOLUTION
    stack = cache.apply_ln_to_stack(cache.stack_head_results(pos=pos), pos=pos)
    per_head = (stack * logit_diff_direction(model, answer, counterfactual)).sum(-1)
    return per_head.view(model.cfg.n_layers, model.cfg.n_heads, -1)
    ### END SOLUTION


# %% tags=["check"]
check.head_attribution(head_attribution)

# %% tags=["tests"] points=2
check.head_attribution(head_attribution, quiet=True).require()
### BEGIN HIDDEN TESTS
check.head_attribution(head_attribution, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### Which parts of the model solve IOI?
#
# The explorer shows, for any prompt and any pair of single-token answers, the
# contribution of every component (green pushes the answer up, red pushes it down) and
# of every head. Change the names, or swap the answer and the counterfactual.

# %%
AttributionExplorer(model, prompt, " Mary", " John")

# %% [markdown]
# One prompt can mislead: a component that pushes against the answer in this sentence may push
# for it in the next. The cell below averages over **held-out** prompts (sentence shapes from
# IOI families the model never trained on, which also played no part in choosing its
# checkpoint) and gives each component's mean with a 95% interval. A component counts as
# pushing *towards* or *against* the answer only when its whole interval is on that side of 0;
# the rest are too small or too variable to call. In GPT-2 small most of the direct push comes
# from a few late heads, the **name movers**, which attend to IO and copy it to the output. The
# cell says where the push comes from here, and what the top heads attend to and write.

# %%
from course.chapters.ch1_residual_stream.findings import attribution_report, ioi_attribution_intervals

summary = ioi_attribution_intervals(model)
for line in attribution_report(summary):
    print(line)

# %% [markdown]
# ## Summary
#
# - The residual stream is a sum of writes; you rebuilt it from the weights and
#   matched the model's logits.
# - The logit lens reads that sum at every depth. Section 3 printed at which depth each fact
#   first reaches the top, how the answer's rank changes on the way, and what the lens puts on
#   top instead: where it only echoes the current token, the plain lens cannot see what the
#   early layers know.
# - With the final layer norm's scale frozen, every logit difference splits into
#   contributions per component and per head, each with an interval over held-out prompts.
#   Section 4 printed what the top heads attend to and whether they raise IO or push S
#   down; in the next chapter you open those heads up and read the same thing from their
#   weights.
