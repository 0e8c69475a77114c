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
# # Chapter 2 — Attention: the QK and OV circuits
#
# An attention head does two separate jobs. It decides **where to look** — which earlier
# position each position reads from — and it decides **what to write** once it has
# looked. The first job depends only on the query-key weights $W_Q, W_K$; the second
# only on the value-output weights $W_V, W_O$. Splitting a head this way, into its
# **QK circuit** and its **OV circuit**, lets us read what a head does straight from its
# weights, and check the reading against what it does on real text.
#
# In this chapter you will compute attention patterns from the weights; write detectors
# that find heads which look at the previous token, at themselves, or at the first
# token; read the QK circuit through the token and position embeddings; read the OV
# circuit and measure whether a head copies; use low rank to compute eigenvalues cheaply;
# and rebuild a head's output from its pattern and its OV circuit.

# %% tags=["module"]
import math

import torch
from torch import Tensor

# %% tags=["setup"]
import course
from course import circuits
from course.chapters.ch2_qk_ov_circuits import checks as check
from course.widgets import AttentionExplorer, CircuitViewer

torch.set_grad_enabled(False)
model = course.load_model()
prompt = "When Mary and John went to the store, John gave a drink to"
logits, cache = model.run_with_cache(prompt)
model

# %% [markdown]
# ## 1. Attention scores and patterns from the weights
#
# For a head $h$ in layer $\ell$, with $x$ the output of the layer's first layer norm,
# the queries are $q = x W_Q^h + b_Q^h$ and the keys $k = x W_K^h + b_K^h$. The score of
# query position $i$ for key position $j$ is $q_i \cdot k_j / \sqrt{d_{head}}$, and a
# causal mask sets every score with $j > i$ to $-\infty$, so that the softmax over $j$
# gives those positions zero weight.

# %% tags=["exercise"]
def attention_scores(x: Tensor, model, layer: int) -> Tensor:
    """Scaled, causally masked attention scores of every head of a layer.

    x: [batch, pos, d_model], the output of the layer's first layer norm.
    Returns [batch, head, query pos, key pos], with -inf above the diagonal.
    """
    # Hint: torch.einsum("bpm,hmd->bhpd", x, model.W_Q[layer]) gives the queries of every head.
    ### BEGIN SOLUTION
    q = torch.einsum("bpm,hmd->bhpd", x, model.W_Q[layer]) + model.b_Q[layer][:, None]
    k = torch.einsum("bpm,hmd->bhpd", x, model.W_K[layer]) + model.b_K[layer][:, None]
    scores = q @ k.transpose(-1, -2) / math.sqrt(model.cfg.d_head)
    n = x.shape[1]
    future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
    return scores.masked_fill(future, float("-inf"))
    ### END SOLUTION


# %% tags=["check"]
check.attention_scores(attention_scores)

# %% tags=["tests"] points=2
check.attention_scores(attention_scores, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_scores(attention_scores, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"]
def attention_pattern(x: Tensor, model, layer: int) -> Tensor:
    """The attention pattern of every head: a softmax of the scores over the key positions.

    x: [batch, pos, d_model]. Returns [batch, head, query pos, key pos]; each row sums to 1.
    """
    ### BEGIN SOLUTION
    return attention_scores(x, model, layer).softmax(-1)
    ### END SOLUTION


# %% tags=["check"]
check.attention_pattern(attention_pattern)

# %% tags=["tests"] points=1
check.attention_pattern(attention_pattern, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_pattern(attention_pattern, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Look at the patterns of every head on a story. Pick a layer and a head; the table
# beside the patterns holds the detector scores you are about to write.

# %%
AttentionExplorer(model, prompt, layer=0)

# %% [markdown]
# ## 2. Head detectors
#
# Some heads have simple, recognisable habits. A **previous-token head** puts most of its
# attention on the position just before; a **current-token head** on the position
# itself; a **first-token head** parks its attention on position 0 (here, the
# `<|endoftext|>` token) when it has nothing better to do. Averaging the right diagonal
# of the pattern gives a score between 0 and 1 for each habit. Position 0 can only
# attend to itself, so leave it out of all three averages.

# %% tags=["exercise"]
def detector_scores(pattern: Tensor) -> Tensor:
    """Previous-, current- and first-token scores of every head in a layer.

    pattern: [batch, head, query pos, key pos]. Returns [3, head]: for query positions
    q >= 1, the mean attention to q - 1, to q, and to 0 (averaged over the batch too).
    """
    # Hint: for q = torch.arange(1, n), pattern[..., q, q - 1] picks the diagonal below the main one.
    ### BEGIN SOLUTION
    n = pattern.shape[-1]
    q = torch.arange(1, n, device=pattern.device)
    previous = pattern[..., q, q - 1].mean((0, -1))
    current = pattern[..., q, q].mean((0, -1))
    first = pattern[..., q, 0].mean((0, -1))
    return torch.stack([previous, current, first])
    ### END SOLUTION


# %% tags=["check"]
check.detector_scores(detector_scores)

# %% tags=["tests"] points=1
check.detector_scores(detector_scores, quiet=True).require()
### BEGIN HIDDEN TESTS
check.detector_scores(detector_scores, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Run the detectors over a set of held-out sentences. The toolkit's
# `findings.previous_token_head` does exactly this; the cell prints every head's
# scores and names the model's previous-token head.

# %%
from course.chapters.ch2_qk_ov_circuits.findings import previous_token_head
from course.circuits import all_detector_scores

texts = ["When Anna and Tom went to the park, Tom gave a book to Anna.",
         "The capital of Velmoria is Tarsk.", "calc: 36 + 59 = 95",
         "Friends Lucy and Max found a quiet garden. Max sent a letter to Lucy."]
scores = all_detector_scores(model, texts)
for layer in range(model.cfg.n_layers):
    for head in range(model.cfg.n_heads):
        prev, cur, first = scores[:, layer, head].tolist()
        print(f"L{layer}H{head}: previous {prev:.2f}  current {cur:.2f}  first {first:.2f}")
found = previous_token_head(model)
print(f"\nprevious-token head: L{found['layer']}H{found['head']} (score {found['score']:.2f} on held-out text); "
      f"baseline: the next best head, {found['runner_up']}, scores {found['runner_up_score']:.2f} and the median of "
      f"the other {found['n_heads'] - 1} heads {found['others_median']:.2f}")

# %% [markdown]
# ## 3. The QK circuit
#
# Where a head looks is a bilinear form: the score of a query vector $x_i$ for a key vector
# $x_j$ is $x_i W_Q W_K^\top x_j^\top / \sqrt{d_{head}}$ (plus bias terms). Feed it the token
# embeddings and you get a **token–token** table: how much a query token wants to look at
# a key token, whatever their positions. Feed it the position embeddings and you get a
# **position–position** table.
#
# The layer norm sits in between. We handle it the simple way: normalize each embedding
# row with the layer's `ln1` as if it were the whole residual stream
# (`torch.nn.functional.layer_norm(rows, (d_model,), model.ln1_w[layer], model.ln1_b[layer])`).
# For layer 0 the stream is just the two embeddings, but normalised *together*: the cell
# below measures, on held-out text, how closely the real layer-0 scores follow the sum of the
# token–token and position–position tables built this way.

# %%
from course.chapters.ch2_qk_ov_circuits.findings import guide_verdict, separate_normalisation_guide

guide = separate_normalisation_guide(model)
print("layer 0, correlation of the real scores with token-token + position-position, by head:",
      [round(c, 2) for c in guide["corr"]])
print(guide_verdict(guide))

# %% tags=["exercise"]
def token_qk_circuit(model, layer: int, head: int, query_tokens: Tensor, key_tokens: Tensor) -> Tensor:
    """Scores between token embeddings through one head's QK circuit (biases included, scaled).

    query_tokens: [n_q] and key_tokens: [n_k] token ids. Returns [n_q, n_k].
    """
    # Hint: normalize model.W_E[tokens] with ln1 of this layer, then it is attention_scores for one head.
    ### BEGIN SOLUTION
    def ln1(rows):
        return torch.nn.functional.layer_norm(rows, (model.cfg.d_model,), model.ln1_w[layer], model.ln1_b[layer])

    q = ln1(model.W_E[query_tokens]) @ model.W_Q[layer, head] + model.b_Q[layer, head]
    k = ln1(model.W_E[key_tokens]) @ model.W_K[layer, head] + model.b_K[layer, head]
    return q @ k.T / math.sqrt(model.cfg.d_head)
    ### END SOLUTION


# %% tags=["check"]
check.token_qk_circuit(token_qk_circuit)

# %% tags=["tests"] points=1
check.token_qk_circuit(token_qk_circuit, quiet=True).require()
### BEGIN HIDDEN TESTS
check.token_qk_circuit(token_qk_circuit, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"]
def positional_qk_circuit(model, layer: int, head: int, n_pos: int) -> Tensor:
    """Scores between the first ``n_pos`` position embeddings through one head's QK circuit, with
    the same conventions as ``token_qk_circuit``: each row through this layer's ln1 (scale and
    bias), the query and key biases b_Q, b_K included, divided by sqrt(d_head).

    Returns [n_pos, n_pos] (query position, key position), without a causal mask.
    """
    ### BEGIN SOLUTION
    rows = torch.nn.functional.layer_norm(model.W_pos[:n_pos], (model.cfg.d_model,),
                                          model.ln1_w[layer], model.ln1_b[layer])
    q = rows @ model.W_Q[layer, head] + model.b_Q[layer, head]
    k = rows @ model.W_K[layer, head] + model.b_K[layer, head]
    return q @ k.T / math.sqrt(model.cfg.d_head)
    ### END SOLUTION


# %% tags=["check"]
check.positional_qk_circuit(positional_qk_circuit)

# %% tags=["tests"] points=1
check.positional_qk_circuit(positional_qk_circuit, quiet=True).require()
### BEGIN HIDDEN TESTS
check.positional_qk_circuit(positional_qk_circuit, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### A finding: the previous-token head's positional circuit
#
# If a head attends to the previous token whatever the token is, its positional QK
# circuit alone should say so: for each query position $i$, among the keys it may see
# ($j \le i$), the highest score should sit at $j = i - 1$. The toolkit computes this for
# the head the detectors found:

# %%
from course.chapters.ch2_qk_ov_circuits.findings import offset_baseline, positional_offset_peaks

peaks = positional_offset_peaks(model, found["layer"], found["head"])
base = offset_baseline(model, found["layer"], found["head"])
print(f"L{found['layer']}H{found['head']}: the positional QK circuit peaks at offset -1 for "
      f"{peaks['share_at_minus_one']:.0%} of query positions (most common offset: {peaks['most_common_offset']}); "
      f"baseline: the other heads' median {base['others_median']:.0%}, their maximum {base['others_max']:.0%}")

# %%
import matplotlib.pyplot as plt

pos = circuits.positional_qk(model, found["layer"], found["head"], 32).full()
pos = pos.masked_fill(torch.ones_like(pos, dtype=torch.bool).triu(1), float("nan"))
plt.figure(figsize=(4.5, 4))
plt.imshow(pos.numpy(), cmap="viridis")
plt.xlabel("key position")
plt.ylabel("query position")
plt.title(f"positional QK circuit, L{found['layer']}H{found['head']}")
plt.colorbar()
plt.show()

# %% [markdown]
# ## 4. The OV circuit
#
# Once a head has decided where to look, what does it write? If it attends entirely to a
# token $t$, the head adds $\text{LN}(W_E[t])\, W_V W_O$ to the stream; through the
# unembedding, that raises or lowers every next-token logit. The **OV circuit**
# $\text{LN}(W_E)\, W_V W_O W_U$ is a token-by-token table: row $s$ is what attending to
# $s$ does to the logit of every token. A head whose table has large diagonal entries
# **copies**: attending to " Mary" makes " Mary" more likely.

# %% tags=["exercise"]
def ov_circuit(model, layer: int, head: int, tokens: Tensor) -> Tensor:
    """The OV circuit restricted to some tokens: entry [i, j] is the effect of attending to
    tokens[i] on the logit of tokens[j]: LN1(W_E[tokens]) W_V W_O W_U[:, tokens].

    The embeddings go through this layer's ln1 with its scale *and* bias (that is what the head
    reads); the value and output biases b_V, b_O are left out (they do not depend on the token
    attended to). tokens: [n] token ids. Returns [n, n].
    """
    ### BEGIN SOLUTION
    rows = torch.nn.functional.layer_norm(model.W_E[tokens], (model.cfg.d_model,),
                                          model.ln1_w[layer], model.ln1_b[layer])
    return rows @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U[:, tokens]
    ### END SOLUTION


# %% tags=["check"]
check.ov_circuit(ov_circuit)

# %% tags=["tests"] points=1
check.ov_circuit(ov_circuit, quiet=True).require()
### BEGIN HIDDEN TESTS
check.ov_circuit(ov_circuit, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Over the whole vocabulary, one summary of copying is the share of tokens whose own
# logit is the largest in their row of the full OV circuit.

# %% tags=["exercise"]
def copying_score(model, layer: int, head: int) -> float:
    """Fraction of vocabulary tokens t for which attending to t raises t's logit more than any other."""
    # Hint: the full OV circuit is d_vocab x d_vocab; argmax along each row.
    ### BEGIN SOLUTION
    all_tokens = torch.arange(model.cfg.d_vocab, device=model.W_E.device)
    table = ov_circuit(model, layer, head, all_tokens)
    return float((table.argmax(-1) == all_tokens).float().mean())
    ### END SOLUTION


# %% tags=["check"]
check.copying_score(copying_score)

# %% tags=["tests"] points=1
check.copying_score(copying_score, quiet=True).require()
### BEGIN HIDDEN TESTS
check.copying_score(copying_score, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Pick tokens and a head, and look at both circuits of that head on them:

# %%
from course.chapters.ch2_qk_ov_circuits.findings import ov_positivity

positivity = ov_positivity(model)
copier = divmod(int(positivity.argmax()), model.cfg.n_heads)        # open on the most copying head
print(f"the viewer opens on L{copier[0]}H{copier[1]}, the head whose OV eigenvalues are most positive "
      f"({float(positivity.max()):+.2f}); the most negative is L{int(positivity.argmin()) // model.cfg.n_heads}"
      f"H{int(positivity.argmin()) % model.cfg.n_heads} ({float(positivity.min()):+.2f})")
CircuitViewer(model, " Mary John Anna Tom gave the a to", layer=copier[0], head=copier[1], kind="OV")

# %% [markdown]
# ## 5. Low rank
#
# $W_Q W_K^\top$ and $W_V W_O$ are $d_{model} \times d_{model}$, but each is a product through
# $d_{head}$ dimensions (`model.cfg.d_head`), so its rank is at most $d_{head}$. Through the
# embeddings the OV circuit is a $d_{vocab} \times d_{vocab}$ table of rank at most $d_{head}$
# (the cell below prints both sizes for the model in front of you). Nothing about it needs the big
# table: for $M = AB$ with $A$ of shape $n \times k$ and $B$ of shape $k \times n$, the
# non-zero eigenvalues of $AB$ are exactly the eigenvalues of the small $k \times k$
# matrix $BA$. The toolkit's `course.lens.factored.FactoredMatrix` keeps such products
# factored and computes eigenvalues, singular values and norms from $k \times k$ products.
#
# The eigenvalues of the OV circuit summarise copying in one more way: a head that copies
# has mostly **positive** eigenvalues (attending to a token pushes along that token's own
# direction).

# %% tags=["exercise"]
def ov_eigenvalues(model, layer: int, head: int) -> Tensor:
    """The d_head eigenvalues of the full OV circuit LN(W_E) W_V W_O W_U, from a d_head x d_head product.

    Returns a complex tensor [d_head], sorted by absolute value, largest first.
    """
    # Hint: A = LN(W_E) @ W_V is [d_vocab, d_head]; B = W_O @ W_U is [d_head, d_vocab]; eig(AB) ~ eig(BA).
    ### BEGIN SOLUTION
    rows = torch.nn.functional.layer_norm(model.W_E, (model.cfg.d_model,), model.ln1_w[layer], model.ln1_b[layer])
    a = rows @ model.W_V[layer, head]
    b = model.W_O[layer, head] @ model.W_U
    eig = torch.linalg.eigvals(b @ a)
    return eig[eig.abs().argsort(descending=True)]
    ### END SOLUTION


# %% tags=["check"]
check.ov_eigenvalues(ov_eigenvalues)

# %% tags=["tests"] points=2
check.ov_eigenvalues(ov_eigenvalues, quiet=True).require()
### BEGIN HIDDEN TESTS
check.ov_eigenvalues(ov_eigenvalues, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# How much does the small product save? The cell times both ways on the model in front of
# you, on the first 384 tokens of the vocabulary (the full eigendecomposition grows as
# $n^3$: on all 2048 tokens it takes tens of seconds on a laptop), and prints the memory
# each needs (the full table in float32 against the two factors). The numbers are
# measured here, on your machine.

# %%
from course.chapters.ch2_qk_ov_circuits.findings import low_rank_savings

print(f"d_head = {model.cfg.d_head}, d_vocab = {model.cfg.d_vocab}: the OV circuit through the embeddings is "
      f"{model.cfg.d_vocab}x{model.cfg.d_vocab} with rank at most {model.cfg.d_head}")
saving = low_rank_savings(model, layer=1, head=0, n_tokens=384, repeats=2)
print(f"full {saving['n_tokens']}x{saving['n_tokens']} table: {saving['full_bytes'] / 2**20:.1f} MiB")
print(f"factored ({model.cfg.d_head}x{model.cfg.d_head}): {saving['factored_bytes'] / 2**20:.2f} MiB "
      f"(how long each takes on your machine: `saving['full_seconds']`, `saving['factored_seconds']`)")
print(f"largest eigenvalue, both ways: {saving['largest_full']:.3f} vs {saving['largest_factored']:.3f}")

# %% [markdown]
# A head of layer 2 or 3 does not read token embeddings: at a token's position it reads the
# embedding *plus* everything earlier layers wrote there. The field's usual correction is the
# **effective embedding**, the embedding plus what layer 0's MLP adds to it
# (`course.circuits.effective_embedding`). The cell prints each head's eigenvalue positivity
# ($\sum \mathrm{Re}\,\lambda / \sum |\lambda|$: +1 copies, −1 suppresses) both ways, and
# which heads of later layers change sign.

# %%
from course.chapters.ch2_qk_ov_circuits.findings import embedding_comparison

both = embedding_comparison(model, plain=positivity)      # the viewer's cell computed W_E's
for layer in range(model.cfg.n_layers):
    print(f"L{layer}: " + "  ".join(f"H{h} {float(both['plain'][layer, h]):+.2f}/{float(both['effective'][layer, h]):+.2f}"
                                    for h in range(model.cfg.n_heads)))
print(f"(through W_E / through the effective embedding) layers 1 and up change by {both['mean_abs_change_later']:.2f} "
      f"on average; sign flips: {', '.join(both['flips']) or 'none'}")

# %% [markdown]
# ## 6. A head's output from its pattern and its OV circuit
#
# Put the two halves back together: a head's output at position $i$ is
# $\sum_j A_{ij} (x_j W_V + b_V) W_O$ — the pattern decides the weights $A_{ij}$, the OV
# circuit decides what each position contributes. Rebuild one head's output from the
# cached pattern and values and compare it with the model's per-head result.

# %% tags=["exercise"]
def head_output(cache, model, layer: int, head: int) -> Tensor:
    """One head's write into the residual stream, without the layer's output bias b_O.

    Uses cache["pattern", layer] and cache["v", layer]. Returns [batch, pos, d_model].
    """
    ### BEGIN SOLUTION
    pattern = cache["pattern", layer][:, head]                 # [batch, q, k]
    v = cache["v", layer][:, :, head]                         # [batch, k, d_head]
    return pattern @ v @ model.W_O[layer, head]
    ### END SOLUTION


# %% tags=["check"]
check.head_output(head_output)

# %% tags=["tests"] points=2
check.head_output(head_output, quiet=True).require()
### BEGIN HIDDEN TESTS
check.head_output(head_output, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - A head is two circuits: QK (where to look) and OV (what to write). Both can be read
#   from the weights, through the embeddings, and checked against the cache.
# - The detectors found the model's previous-token head, and its positional QK circuit
#   explains why it looks one step back.
# - The circuits have rank at most $d_{head}$: eigenvalues and norms come from small
#   products, which the `FactoredMatrix` helper computes for you.
#
# In the next chapter, heads compose: a previous-token head's output becomes the key an
# induction head searches for.
