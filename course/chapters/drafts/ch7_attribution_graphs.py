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
# # Chapter 7 — Attribution graphs: tracing a circuit with transcoders
#
# DRAFT SKELETON (not yet built, checked or graded). The toolkit it uses is `course.attribution`
# (tested in `tests/test_attribution.py`); the numbers the text will state come from
# `course.findings_ch7` and are asserted there, never typed here.
#
# Chapter 6 found how the course model adds by probing, patching and ablating neurons. Here the
# same question is answered the way Anthropic's "Circuit Tracing" (2025) did for "36 + 59":
# replace every MLP by a sparse, readable **transcoder**, freeze what attention and the layer
# norms did on one prompt, and the model becomes *linear* in its features — so every feature's
# direct effect on every later feature and on the answer is a number, and the whole computation
# is a graph.

# %% tags=["setup"]
import time

import torch

import course
from course.attribution import (LocalReplacement, attribute, evaluate_transcoders, load_shipped_transcoders, prune,
                                supernodes)
from course.findings_ch7 import addition_graph, digit_profile, pathways, position_roles, suppress_feature

started = time.perf_counter()
model = course.load_model()
tcs = load_shipped_transcoders(model, strict=True)

# %% [markdown]
# ## 1. Transcoders
#
# A transcoder is chapter 5's sparse dictionary with two sites: it reads the MLP's input
# (`blocks.l.ln2.hook_normalized`) and predicts the MLP's output (`blocks.l.hook_mlp_out`).
# Exercise (planned): the transcoder loss on a batch — the reconstruction of the *output* from the
# *input* — reusing `course.saes.dictionary_loss`; train one layer for a small budget with a progress
# bar (`course.attribution.train_transcoders(model, layers=[0], tokens=...)`).
# Then: the shipped set's metrics per layer (FVU, L0, dead share) and the loss with every MLP
# replaced, from `evaluate_transcoders`.

# %% [markdown]
# ## 2. The local replacement model
#
# Exercise (planned): `replacement_forward(rep, embedding, writes)` — ln_1 with the frozen scale,
# values, the frozen pattern, W_O, ln_2's normalized input (what the transcoders read), the MLP
# write, the final layer norm with its frozen scale. Check: the logits equal the model's to 1e-4
# (reference: `LocalReplacement.forward`).

# %% [markdown]
# ## 3. Attribution
#
# Exercise (planned): `edge_row(rep, target)` — one backward pass from a target (a feature's
# pre-activation, or the answer's logit minus the mean logit) to every source's write, then
# write · gradient. Check against brute force: remove one source, rerun the linear model, and the
# target moves by exactly the edge (`tests/test_attribution.py` does this for every kind of node).
# Then the whole graph with batched targets (`attribute`), and its completeness: every target is
# its bias value plus the sum of its incoming edges.

# %% [markdown]
# ## 4. Pruning and supernodes
#
# Exercise (planned): `influence(adjacency, logit_weights)` as the path sum v(W + W² + …) of the
# row-normalised |edges|, by a linear solve; check against the explicit power series. Then
# `prune` (features carrying 80% of the influence, edges carrying 98%): the fraction kept is
# printed from `PrunedGraph.stats()`; and supernodes grouping the features of each pathway.

# %% [markdown]
# ## 5. The graph for "calc: 36 + 59 = 9" → "5"
#
# `addition_graph(model, tcs)`; `pathways(model, found)` groups kept features by layer and by the
# operand digit they sit on; `digit_profile` says what each top feature reads over every sum;
# `suppress_feature` subtracts a feature's decoder direction in the real model and compares the
# change of the answer's logit with the graph's prediction (the "Dallas → Austin" validation).

# %% [markdown]
# ## 6. A second graph (planned): a fact ("The capital of X is") or IOI, compared with chapters 3–4.
#
# ## Widget (planned): an offline attribution-graph viewer — nodes by layer × position, edge widths
# by effect, a pruning threshold slider, a node's digit profile / top contexts and logit effect.

# %% tags=["setup"]
print(f"chapter ran in {time.perf_counter() - started:.1f} s")
