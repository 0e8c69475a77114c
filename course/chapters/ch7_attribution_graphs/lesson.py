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
# Chapter 6 found how the course model adds by probing, patching and ablating neurons. Here the
# same question is answered the way Anthropic's *Circuit Tracing* (Ameisen et al., 2025) did
# for "36 + 59": replace every MLP by a sparse, readable **transcoder**, freeze what attention
# and the layer norms did on one prompt, and the model becomes *linear* in its features. Then
# every feature's direct effect on every later feature and on the answer is one number, and
# the whole computation is a graph we can prune, read and test by intervening in the real model.
# One difference from that paper: its transcoders are **cross-layer** (a feature read at one
# layer writes into every later MLP output), ours are **per-layer** (each reads and writes one
# MLP), as in Dunefsky et al. (2024). A per-layer set needs more features to say the same
# thing, and leaves more in the error nodes.
#
# The course tokenizer writes a sum digit by digit, so "95" is two steps. The main prompt is
# `"calc: 36 + 59 = 9"`: the model has written the tens digit of 95 and must now write the ones
# digit, `"5"`; §5 ends with the first step, `"calc: 36 + 59 ="` → `"9"`, the digit that needs the
# carry. Every number below is computed in front of you.

# %% tags=["module"]
import torch
from torch import Tensor

# %% tags=["setup"]
import matplotlib.pyplot as plt

import course
from course.attribution import LocalReplacement, attribute, load_shipped_transcoders, prune
from course.chapters.ch7_attribution_graphs import checks as check

torch.set_grad_enabled(False)
torch.manual_seed(0)
model = course.load_model()
tcs = load_shipped_transcoders(model, strict=True)
print(f"course model: {model.cfg.n_layers} layers; transcoders: {tcs[0].cfg.d_sae} features per layer, "
      f"{tcs[0].cfg.activation} (k = {tcs[0].cfg.k})")

# %% [markdown]
# ## 1. Transcoders
#
# A transcoder is chapter 5's sparse dictionary with two sites: it **reads the MLP's input**
# (the normalised stream, `blocks.l.ln2.hook_normalized`) and **predicts the MLP's output**
# (`blocks.l.hook_mlp_out`): $\hat y = \sigma(x W_{enc} + b_{enc}) W_{dec} + b_{dec}$, where σ is the
# transcoders' activation, the one printed above (see the transcoders' card: TopK keeps at most the k
# largest positive pre-activations per token, JumpReLU zeroes each pre-activation below its own
# learned threshold, ReLU keeps the positive ones). Where an
# SAE explains an activation by itself, a transcoder explains what the MLP *does*, by a sparse
# sum of features, each with an input direction (its encoder column) and an output direction
# (its decoder row). That is what lets the graph skip the MLP's nonlinearity.
#
# Its loss is the squared error of the *output* (summed over dimensions, averaged over tokens),
# plus, for a ReLU transcoder, `l1_coeff` times the L1 norm of the features. Its quality is
# measured by the **fraction of variance unexplained** (FVU):
# $\sum \|y - \hat y\|^2 / \sum \|y - \bar y\|^2$, where $\bar y$ is the mean output over the tokens.

# %% tags=["exercise"]
def transcoder_loss(tc, x: Tensor, y: Tensor, l1_coeff: float) -> tuple[Tensor, Tensor]:
    """(training loss, fraction of variance unexplained) of transcoder ``tc`` on a batch.

    x: [batch, d_in], the MLP's normalised input; y: [batch, d_out], the MLP's real output.
    Both results are scalars. The L1 term applies only when tc.cfg.activation == "relu".
    """
    # Hint: tc.encode(x) gives the features, tc.decode(f) the prediction; compare it with y, not x.
    ### BEGIN SOLUTION
    features = tc.encode(x)
    error = (tc.decode(features) - y).pow(2).sum(-1)
    loss = error.mean()
    if tc.cfg.activation == "relu":
        loss = loss + l1_coeff * features.abs().sum(-1).mean()
    fvu = error.sum() / (y - y.mean(0)).pow(2).sum()
    return loss, fvu
    ### END SOLUTION


# %% tags=["check"]
check.transcoder_loss(transcoder_loss)

# %% tags=["tests"] points=1
check.transcoder_loss(transcoder_loss, quiet=True).require()
### BEGIN HIDDEN TESTS
check.transcoder_loss(transcoder_loss, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Train one, for layer 0 on a small budget: a **ReLU** transcoder with an L1 penalty (the
# toolkit's trainer, chapter 5's; its progress bar shows the batch's explained variance,
# `expl_var` = 1 − FVU, and L0), and measure it with your function on held-out text, L1 term
# included. The same text is used twice, in large batches and in small ones: a budget is
# counted in tokens, but what a small run lacks may be optimizer steps. The rest of the chapter uses the **shipped** transcoders, one per layer, trained
# longer with the activation printed at the top (`python -m course.training.transcoders`;
# `--activation relu` or `jumprelu` trains the other kinds, and the transcoders' card says how the
# shipped kind was chosen).

# %%
from course.attribution import evaluate_transcoders, train_transcoders
from course.attribution.transcoders import input_site, output_site
from course.saes import read_sites
from course.saes.metrics import evaluation_tokens

# The same 30,000 tokens two ways: in batches of 1,024 (29 optimizer steps) and of 64 (468 steps).
runs = {}
for batch_size in (1024, 64):
    runs[batch_size], _ = train_transcoders(model, layers=[0], tokens=30_000, d_sae=256, batch_size=batch_size,
                                            activation="relu", l1_coeff=0.05, resample_every=40, progress=True)
held_out = evaluation_tokens(model, n_rows=16)
sites = read_sites(model, held_out, [input_site(0), output_site(0)])
x0, y0 = sites[input_site(0)].flatten(0, 1), sites[output_site(0)].flatten(0, 1)
loss_fn = transcoder_loss if check.transcoder_loss(transcoder_loss, quiet=True) else None
if loss_fn is not None:
    fvus = {}
    for name, tc in (("yours, batch 1024 (29 steps)", runs[1024][0]), ("yours, batch 64 (468 steps)", runs[64][0]),
                     ("shipped", tcs[0])):
        loss, fvus[name] = loss_fn(tc, x0, y0, tc.cfg.l1_coeff)
        print(f"layer 0, {name}: loss {float(loss):.3f}, FVU {float(fvus[name]):.3f}")
    big, small, shipped = (float(v) for v in fvus.values())
    tokens_shipped = tcs[0].cfg.extra.get("training", {}).get("tokens")
    print(f"on the same 30,000 tokens, 468 small steps reach FVU {small:.3f} and 29 large ones {big:.3f}: "
          + ("the number of optimizer steps, not the amount of text, is what the large batch lacks"
             if small < 0.5 * big else "the batch size changes little here")
          + f"; the shipped transcoder ({tokens_shipped:,} tokens, {tcs[0].cfg.d_sae} features) reaches {shipped:.3f}"
          + (f", an FVU {small / shipped:.1f}x lower than the small run's" if shipped < small else
             ", no better than the small run"))
else:
    print("transcoder_loss is not done yet (see its check above): the comparison is skipped")

# %% [markdown]
# Every shipped transcoder, measured on held-out corpus text: FVU, **L0** (active features per
# token), the share of **dead** features (never active on this text), and the model's loss with
# that MLP replaced; then with *every* MLP replaced at once, against the clean model and against
# every MLP's output zeroed.
#
# Read the table with three things in mind. An FVU is a share of *that layer's* variance, and
# layers matter unequally to the output: a small error in an MLP the answer leans on costs more loss
# than a large error in one it barely uses, so the layer with the lowest FVU need not be the one
# whose replacement costs least (the last line compares them: it can even cost the most). A TopK transcoder keeps *at most* k
# features per token (fewer where fewer pre-activations are positive), so its L0 can sit below k.
# And "dead" counts the features that fire on none of the tokens read: the shorter the text, the
# more rare features look dead, so it is printed for two windows. These transcoders were trained
# with their input centred on its mean: without that, the few features aligned with the normalised
# stream's shared direction fired on nearly every token and most of the others never fired.

# %%
from course.attribution.transcoders import dead_share
from course.neurons import text_stream

card_text = evaluation_tokens(model)                                  # the card's 4,096 held-out tokens
long_text = text_stream(model, 1024, 64, seed=987_654).tokens          # the same text, 16 times longer
metrics = evaluate_transcoders(model, tcs, card_text)
dead_long = dead_share(model, tcs, long_text)
for m_, d in zip(metrics["layers"], dead_long):
    print(f"layer {m_.layer}: FVU {m_.fvu:.3f}, L0 {m_.l0:.1f}, dead {m_.dead:.0%} of features on "
          f"{card_text.numel():,} tokens ({d:.0%} on {long_text.numel():,}), loss with it replaced {m_.alone_loss:.3f}")
print(f"loss: clean {metrics['clean_loss']:.3f}; every MLP replaced {metrics['replaced_loss']:.3f}; "
      f"every MLP zeroed {metrics['mlps_zeroed_loss']:.3f}")
best_fvu = min(metrics["layers"], key=lambda m_: m_.fvu)
worst_loss = max(metrics["layers"], key=lambda m_: m_.alone_loss)
print(f"lowest FVU: layer {best_fvu.layer} ({best_fvu.fvu:.3f}); the largest loss increase when replaced: layer "
      f"{worst_loss.layer} (+{worst_loss.alone_loss - metrics['clean_loss']:.3f})"
      + (" -- the same layer: a small unexplained share of an MLP the output leans on still costs the most"
         if best_fvu.layer == worst_loss.layer else ""))

# %% [markdown]
# ## 2. The local replacement model
#
# Replacing the MLPs changes the model's output a little (the loss above). For *one prompt* we
# can do better: add to each transcoder's output an **error term** per (layer, position), the
# real MLP output minus the transcoder's, and freeze the attention patterns and every layer
# norm's scale at their values on the prompt. This **local replacement model** reproduces the
# model's logits on the prompt exactly, and everything in it is linear in two kinds of input:
# the token embeddings and the MLP writes (`rep.embedding()`, `[pos, d_model]`, and
# `rep.mlp_writes()`, `[layer, pos, d_model]`).
#
# `LocalReplacement.build(model, tcs, prompt)` runs the real model once and keeps what is
# frozen: `rep.ln1_scale`, `rep.ln2_scale` (`[layer, pos, 1]`), `rep.ln_final_scale` (`[pos, 1]`),
# `rep.patterns` (`[layer, head, query, key]`), plus `rep.activations` (`[layer, pos, d_sae]`) and
# `rep.errors` (`[layer, pos, d_model]`). Write its forward pass. A layer norm with a frozen
# scale is: centre, divide by the frozen scale, times the weight, plus the bias.

# %% tags=["exercise"]
def replacement_logits(rep, embedding: Tensor, writes: Tensor) -> Tensor:
    """The local replacement model's logits, ``[pos, d_vocab]``.

    embedding: [pos, d_model], the input stream; writes: [layer, pos, d_model], what each MLP adds.
    Each layer: ln_1 with its frozen scale, values, the frozen pattern, W_O and b_O, then the MLP write.
    """
    # Hint: rep.model has W_V [layer, head, d_model, d_head], b_V [layer, head, d_head],
    # W_O [layer, head, d_head, d_model], b_O, ln1_w, ln1_b, ln_final_w, ln_final_b, W_U, b_U.
    # The frozen scales are [pos, 1] per layer: they broadcast over d_model. rep.ln2_scale is not
    # needed: the writes replace the whole MLP, its layer norm included.
    ### BEGIN SOLUTION
    m = rep.model

    def frozen_norm(x, scale, weight, bias):
        return (x - x.mean(-1, keepdim=True)) / scale * weight + bias

    resid = embedding
    for layer in range(rep.n_layers):
        x = frozen_norm(resid, rep.ln1_scale[layer], m.ln1_w[layer], m.ln1_b[layer])
        values = torch.einsum("kd,hde->hke", x, m.W_V[layer]) + m.b_V[layer][:, None]
        mixed = torch.einsum("hqk,hke->hqe", rep.patterns[layer], values)
        resid = resid + torch.einsum("hqe,hed->qd", mixed, m.W_O[layer]) + m.b_O[layer]
        resid = resid + writes[layer]
    return frozen_norm(resid, rep.ln_final_scale, m.ln_final_w, m.ln_final_b) @ m.W_U + m.b_U
    ### END SOLUTION


# %% tags=["check"]
check.replacement_logits(replacement_logits)

# %% tags=["tests"] points=2
check.replacement_logits(replacement_logits, quiet=True).require()
### BEGIN HIDDEN TESTS
check.replacement_logits(replacement_logits, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# On the prompt, with its own embedding and MLP writes, it gives the real model's logits:

# %%
prompt = "calc: 36 + 59 = 9"
rep = LocalReplacement.build(model, tcs, prompt)
forward = replacement_logits if check.replacement_logits(replacement_logits, quiet=True) else \
    (lambda r, e, w: r.forward(e, w)["logits"])
real = model(rep.tokens)[0]
print(f"largest difference from the model's logits: {float((forward(rep, rep.embedding(), rep.mlp_writes()) - real).abs().max()):.1e}")
print(f"the model's answer: {model.to_string(real[-1].argmax().reshape(1))!r} "
      f"(p = {float(real[-1].softmax(-1).max()):.3f}); {int((rep.activations > 0).sum())} active features")

# %% [markdown]
# ## 3. Attribution: direct effects by backward passes
#
# A target — the answer's logit, or a feature's pre-activation — is an affine function of the
# sources' writes (embeddings, error terms, each active feature's activation times its decoder
# row). So its **direct effect** from a source is the write dotted with the gradient of the
# target at the place the source writes; one backward pass gives a target's whole row. The
# logit target is the answer's logit *minus the mean over the vocabulary*: a softmax cannot see
# a shift of every logit.
#
# *Direct* means: through the residual stream and attention only. The writes are *inputs* to
# `rep.forward`, so when an earlier write changes, the later transcoders do not respond (their
# writes stay as given), and attention mixes positions with its frozen patterns. An effect that
# runs *through* another feature (the earlier write changes that feature's pre-activation, so its
# activation and its write) is a chain of edges, one per step (§4); summing over every chain gives
# the **total effect** (§5).

# %% tags=["exercise"]
def logit_edges(rep, token: int) -> tuple[Tensor, Tensor, Tensor]:
    """Direct effects on the last position's (logit[token] - its mean over the vocabulary) in the
    replacement model.

    Returns (feature edges [layer, pos, d_sae], zero where a feature is inactive;
    error edges [layer, pos]; embedding edges [pos]).
    """
    # Hint: make rep.embedding() and rep.mlp_writes() leaves with requires_grad, run
    # rep.forward(embedding, writes)["logits"] with gradients switched on (torch.enable_grad), then
    # torch.autograd.grad. A feature's write is rep.activations[l, p, f] * rep.transcoders[l].W_dec[f]
    # (W_dec: [d_sae, d_model]); an error node's write is rep.errors[l, p]; an embedding's write is its
    # row of rep.embedding().
    ### BEGIN SOLUTION
    embedding = rep.embedding().detach().requires_grad_(True)
    writes = rep.mlp_writes().detach().requires_grad_(True)
    with torch.enable_grad():
        logits = rep.forward(embedding, writes)["logits"][-1]
        target = logits[token] - logits.mean()
        grad_embedding, grad_writes = torch.autograd.grad(target, [embedding, writes])
    decoders = torch.stack([tc.W_dec for tc in rep.transcoders])                  # [layer, d_sae, d_model]
    per_unit = torch.einsum("lpd,lfd->lpf", grad_writes, decoders)
    return (rep.activations * per_unit, (grad_writes * rep.errors).sum(-1),
            (grad_embedding * embedding.detach()).sum(-1))
    ### END SOLUTION


# %% tags=["check"]
check.logit_edges(logit_edges)

# %% tags=["tests"] points=2
check.logit_edges(logit_edges, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_edges(logit_edges, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# `attribute(rep)` does the same for every target at once (the logit and every active feature's
# pre-activation, batched along a leading dimension) and stores the **adjacency matrix**,
# `adjacency[target, source]`. Because the model is linear, it is **complete**: every target
# equals its value with every source removed plus the sum of its incoming edges.

# %%
graph = attribute(rep)
answer = int(graph.logit_tokens[0])
completeness = (graph.bias_values + graph.adjacency.sum(1) - graph.target_values).abs().max()
print(f"{graph.n_nodes} nodes ({graph.n_features} features, {graph.slices()['error'].stop - graph.n_features} "
      f"errors, {graph.n_pos} embeddings, {len(graph.logit_tokens)} logit); "
      f"{int((graph.adjacency != 0).sum()):,} nonzero edges; completeness error {float(completeness):.1e}")
if check.logit_edges(logit_edges, quiet=True):
    f_edges, _, _ = logit_edges(rep, answer)
    logit_row = graph.adjacency[graph.slices()["logit"].start, graph.slices()["feature"]]
    print(f"your edges vs attribute's: largest difference {float((f_edges[rep.activations > 0] - logit_row).abs().max()):.1e}")

# %% [markdown]
# ## 4. Pruning by influence
#
# Hundreds of features have *some* effect. To keep the ones that matter, count indirect effects
# too: take $|A|$ with each target's incoming edges normalised to sum to one ($W$), and sum
# every path to the logits, weighted by the logits' probabilities $v$:
# $\text{influence} = v(W + W^2 + \dots) = v\left((I - W)^{-1} - I\right)$. The graph has no
# cycles (an edge goes from an earlier layer to a later one), so $W^n = 0$ beyond its depth: the
# series is a finite sum, and the inverse exists.
#
# Influence uses **absolute values**: a feature that pushes *against* the answer is as influential
# as one that pushes for it. It ranks what the computation goes through, not what helps the answer.

# %% tags=["exercise"]
def influence(adjacency: Tensor, logit_weights: Tensor) -> Tensor:
    """Every node's total influence on the logits, ``[n_nodes]``.

    adjacency: [n_nodes, n_nodes], adjacency[target, source] (a DAG: no cycles);
    logit_weights: [n_nodes], the logits' probabilities (summing to 1), zero elsewhere.
    Normalise each row (a target's inputs) of |adjacency| to sum to 1; a row with no inputs (an
    embedding) stays zero, so clamp the divisor away from 0. logit_weights is a row vector: v @ W.
    """
    # Hint: torch.linalg.inv works; compute in float64, return float32.
    ### BEGIN SOLUTION
    W = adjacency.abs().double()
    W = W / W.sum(1, keepdim=True).clamp_min(1e-12)
    eye = torch.eye(len(W), dtype=W.dtype)
    return (logit_weights.double() @ (torch.linalg.inv(eye - W) - eye)).float()
    ### END SOLUTION


# %% tags=["check"]
check.influence(influence)

# %% tags=["tests"] points=1
check.influence(influence, quiet=True).require()
### BEGIN HIDDEN TESTS
check.influence(influence, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# `prune(graph, node_threshold, edge_threshold)` keeps the features carrying 80% of the
# features' influence (errors, embeddings and logits stay), then the edges carrying 98% of
# the edge influence. The **error share** says how much of the answer's influence ends at
# error nodes rather than at token embeddings: what the transcoders did not explain.

# %%
from course.attribution.pruning import error_share
from course.chapters.ch7_attribution_graphs.findings import addition_graph, pathways, supernode_groups, top_features

found = addition_graph(model, tcs)
pruned, stats = found["pruned"], found["stats"]
print(f"kept {stats['features_kept']} of {stats['features']} features ({stats['feature_fraction_kept']:.1%}), "
      f"carrying {stats['feature_influence_kept']:.0%} of their influence; {stats['edges_kept']} of "
      f"{stats['edges']:,} edges ({stats['edge_fraction_kept']:.1%}); error share {found['error_share']:.2f}")

# %% [markdown]
# ## 5. The graph for "calc: 36 + 59 = 9" → "5"
#
# A feature node's label reads `L{layer}/F{feature} @{position}:{token}`: the layer, the feature's
# index in that layer's transcoder, and the prompt position it is active at with that position's
# token. Error nodes (`L{layer} error @...`), embeddings (`embed @...`) and the logit (the token's
# id and its probability) are labelled alike; the cell prints one of each kind.
#
# Group the kept features by layer and by the role of the position they sit at (the operands'
# digits, "=", the tens digit already written): each group is a stage of a pathway, and the
# groups become **supernodes**, their edges the sums of their members' edges. A group's direct
# effect on the logit keeps its sign: influence counts |edges|, so a group can be among the most
# influential and still push *against* the answer.

# %%
from course.attribution import supernodes

routes = pathways(model, found)
print("labels, e.g.:", ", ".join(sorted({graph.kind(n): graph.label(n) for n in pruned.nodes()}.values())))
for r in routes:
    print(f"layer {r['layer']} at {r['role'].strip():9s}: {len(r['features']):2d} features, influence "
          f"{r['influence']:.3f}, direct effect on the logit {r['direct']:+.2f}")
groups = supernode_groups(model, found)
sg = supernodes(graph, groups, nodes=[n for n in pruned.nodes() if graph.kind(n) != "feature"])
names = list(groups)
flows = sorted(((float(sg.adjacency[t, s]), sg.labels[s], sg.labels[t]) for t in range(len(names))
                for s in range(len(sg.labels)) if s != t and sg.adjacency[t, s] != 0), key=lambda e: -abs(e[0]))
print("strongest edges between supernodes:")
for w, s, t in flows[:8]:
    print(f"  {s:>28s} -> {t:<16s} {w:+.2f}")
answer_row = sg.adjacency[sg.labels.index(graph.label(graph.slices()["logit"].start))]
print("into the answer's logit:", ", ".join(f"{names[i]} {float(answer_row[i]):+.2f}" for i in range(len(names))))
from course.chapters.ch7_attribution_graphs.findings import absent_layer_verdict, layers_in_graph, mlp_zeroing_drops

drops, in_graph = mlp_zeroing_drops(model, found), layers_in_graph(found)
for layer in sorted(set(drops) - in_graph):
    print(absent_layer_verdict(layer, drops[layer], found["answer"], {k: drops[k] for k in in_graph}))

# %% [markdown]
# **Where the answer's logit comes from.** By completeness (§3) the answer's demeaned logit is a
# sum: the constant (every bias: what the logit is with every source removed), plus the direct
# edges from the features, from the error nodes and from the token embeddings. The cell computes
# each part, and which kind of node is the most influential of all.

# %%
from course.chapters.ch7_attribution_graphs.findings import logit_decomposition

parts = logit_decomposition(found)
sources = ("constant", "feature", "error", "embedding")
print(f"the answer's demeaned logit {parts['logit']:.2f} = constant (biases) {parts['constant']:+.2f}, features "
      f"{parts['feature']:+.2f}, error nodes {parts['error']:+.2f}, embeddings {parts['embedding']:+.2f} "
      f"(sum {sum(parts[k] for k in sources):.2f})")
largest = max(sources, key=lambda k: parts[k])
print(f"the largest positive part: {largest}; the features together "
      f"{'raise' if parts['feature'] > 0 else 'lower'} the answer's logit by {abs(parts['feature']):.2f}")
against = [r for r in routes if r["direct"] < 0]
print(f"{len(against)} of the {len(routes)} pathway groups push against the answer directly"
      + (f", the most influential of them: layer {against[0]['layer']} at {against[0]['role'].strip()}" if against else ""))
strongest = max((n for n in pruned.nodes() if graph.kind(n) != "logit"), key=lambda n: float(pruned.influence[n]))
print(f"the most influential node of any kind: {graph.label(strongest)} ({graph.kind(strongest)}, influence "
      f"{float(pruned.influence[strongest]):.3f})")

# %% [markdown]
# Read the parts with their signs. Where the features' part is small or negative while the
# constant and the error nodes carry the logit, the transcoders do not say *why* the answer wins:
# most of its logit comes from the biases and from what the transcoders leave unexplained, and the
# features mostly move it up and down around that. What the graph does give is *which*
# computations the answer runs through, and how strongly each pushes which way; the interventions
# below test those claims in the real model.

# %% [markdown]
# **What the features read.** A feature's top-activating contexts on corpus text (each context
# ends at the token where the feature fires, boxed in the viewer), and for the most influential
# feature on an operand's ones digit its mean activation by the digit at that position over every
# two-digit sum (`digit_profile`): how much of it is "this digit" and how much is "a ones digit in
# a sum". A spread across digits (largest minus smallest mean) well above the mean says "this
# digit"; a flat profile says "a ones digit". And what each feature **promotes**: its decoder
# row read through the unembedding on the ten digits, minus their mean (its direct push; the
# interventions below measure its whole effect). In Anthropic's account of "36 + 59" one
# feature says "the sum ends in 5"; here a feature that promotes the answer's digit and its
# neighbour is read the same way.

# %%
from course.chapters.ch7_attribution_graphs.findings import (digit_profile, feature_reading, position_roles,
                                                             promoted_digits)
from course.neurons import text_stream
from course.saes.features import feature_activations, feature_contexts

text = text_stream(model, n_rows=96, row_len=48, seed=0)
roles = position_roles(model, prompt)
answer_digit = found["answer"].strip()
for node in top_features(found, 6):
    d = graph.describe(node)
    acts = feature_activations(model, tcs[d["layer"]], text.tokens)
    ctx = feature_contexts(model, text.tokens, acts, d["feature"], k=3, width=8)
    print(f"{graph.label(node)} ({roles[d['pos']].strip()}), influence {float(pruned.influence[node]):.3f}; "
          + feature_reading(promoted_digits(model, tcs, d["layer"], d["feature"]), answer_digit))
    for c in ctx:
        print(f"    {''.join(c.tokens)!r} -> {c.activations[c.at]:.2f}")
operand = next(n for n in top_features(found, 40) if roles[graph.describe(n)["pos"]].strip() in ("a ones", "b ones"))
od = graph.describe(operand)
profile = digit_profile(model, tcs, od["layer"], od["feature"], roles[od["pos"]])
spread, mean = float(profile.max() - profile.min()), float(profile.mean())
print(f"{graph.label(operand)}: mean activation by the digit at its position "
      f"{[round(float(v), 2) for v in profile]}; peaks at {int(profile.argmax())}; spread {spread:.2f} against a "
      f"mean of {mean:.2f}: mostly " + ("'this digit'" if spread > mean else "'a ones digit in a sum'"))

# %% [markdown]
# ### Validation by intervention
#
# A graph is a claim about the model, so test it the way *Circuit Tracing* did ("Dallas →
# Austin"): in the **real** model, subtract a feature's write (activation times decoder row)
# from the MLP output at its layer and position, let everything downstream run (attention and
# layer norms included), and compare the change of the answer's (demeaned) logit with the
# graph's prediction.

# %% tags=["exercise"]
def suppression_effect(model, tokens: Tensor, layer: int, pos: int, direction: Tensor, token: int) -> Tensor:
    """Change of the last position's (logit[token] - its mean over the vocabulary) when
    ``direction [d_model]`` is subtracted from blocks.{layer}.hook_mlp_out at position ``pos`` only.
    tokens: [1, pos]. A 0-d tensor: after minus before."""
    # Hint: a hook (x, hook) that returns a changed copy; model.run_with_hooks(tokens, fwd_hooks=[...]).
    ### BEGIN SOLUTION
    def subtract(x, hook):
        x = x.clone()
        x[:, pos] -= direction
        return x

    def demeaned(logits):
        return logits[token] - logits.mean()

    before = model(tokens)[0, -1]
    after = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", subtract)])[0, -1]
    return demeaned(after) - demeaned(before)
    ### END SOLUTION


# %% tags=["check"]
check.suppression_effect(suppression_effect)

# %% tags=["tests"] points=1
check.suppression_effect(suppression_effect, quiet=True).require()
### BEGIN HIDDEN TESTS
check.suppression_effect(suppression_effect, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The graph's prediction for removing a feature is its **total effect**: its direct edge to the
# logit plus every path through the features downstream of it, each of which moves with its
# pre-activation (`total_effects`). The table compares it with your intervention in the real model
# (everything live), and with the same intervention with only the final layer norm's scale frozen
# at its value on the prompt (a hook on `ln_final.hook_scale` that returns the clean run's scale).

# %%
from course.chapters.ch7_attribution_graphs.findings import suppression_agreement, validate_by_suppression

effect_fn = suppression_effect if check.suppression_effect(suppression_effect, quiet=True) else None
checked = validate_by_suppression(model, found, top_features(found, 10))
for r in checked:
    d = graph.describe(r["node"])
    mine_ = f", yours {float(effect_fn(model, rep.tokens, d['layer'], d['pos'], tcs[d['layer']].W_dec[d['feature']] * d['activation'], answer)):+.2f}" \
        if effect_fn else ""
    print(f"{r['feature']:20s} graph predicts {r['predicted_total']:+6.2f}, real model {r['actual']:+6.2f}, real with "
          f"the final norm frozen {r['actual_final_frozen']:+6.2f}{mine_}; "
          f"P({found['answer']!r}) {r['p_before']:.3f} -> {r['p_after']:.3f}, top token {r['top_after']!r}")
raising = [r for r in checked if r["predicted_total"] > 0]
print(f"the graph predicts that removing {len(raising)} of these {len(checked)} most influential features would "
      f"*raise* the answer's logit (influence ranks by size, not sign)"
      + (": in the real model removing them moves it by " + ", ".join(f"{r['actual']:+.2f}" for r in raising)
         + f" ({sum(r['actual'] > 0 for r in raising)} of {len(raising)} raise it)" if raising else ""))
ratios = [r["actual"] / r["predicted_total"] for r in checked
          if abs(r["predicted_total"]) > 0.5 and r["actual"] * r["predicted_total"] > 0]
if ratios:
    ratios.sort()
    print(f"where graph and real model agree in sign, the real effect is {ratios[0]:.0%}–{ratios[-1]:.0%} of the "
          f"predicted one (median {ratios[len(ratios) // 2]:.0%}): the graph holds the attention patterns and "
          f"norms fixed, the real model does not")
agreement = suppression_agreement(model, found, checked)
print(f"sign agrees for {agreement['sign_agreement']:.0%} of the {len(checked)} features; "
      f"the operand feature with the largest predicted effect: {agreement['operand']['feature']} "
      f"(graph {agreement['operand']['predicted_total']:+.2f}, real {agreement['operand']['actual']:+.2f}, "
      f"answer becomes {agreement['operand']['top_after']!r})")
print(f"that feature is {'the one whose digit profile is above' if agreement['operand']['node'] == operand else 'not the one profiled above (' + graph.label(operand) + ')'}: "
      f"a feature that reads its operand's digit should move the answer when removed, and "
      f"P({found['answer']!r}) goes {agreement['operand']['p_before']:.3f} -> {agreement['operand']['p_after']:.3f}")

# %% [markdown]
# **Why the graph and the model disagree.** The graph froze every layer norm's scale and every
# attention pattern, and let the features downstream respond linearly. For a feature in the last
# layer only the final layer norm lies between its write and the logit, so freezing that one scale
# should make the real model agree with the graph exactly: whatever gap remains live is the final
# norm rescaling the whole stream after a large write is removed. For a feature in an earlier layer
# the later MLPs lie in between: the real MLPs respond nonlinearly to the change, while the graph's
# transcoder features respond linearly and its error terms not at all, so a gap can remain with the
# norms frozen. The cell measures both.

# %%
last_layer = [r for r in checked if graph.describe(r["node"])["layer"] == model.cfg.n_layers - 1]
earlier = [r for r in checked if graph.describe(r["node"])["layer"] < model.cfg.n_layers - 1]
if last_layer:
    gap_frozen = max(abs(r["actual_final_frozen"] - r["predicted_total"]) for r in last_layer)
    gap_live = max(abs(r["actual"] - r["predicted_total"]) for r in last_layer)
    print(f"{len(last_layer)} last-layer features: largest gap to the graph live {gap_live:.2f}, with the final "
          f"norm frozen {gap_frozen:.1e}")
for r in earlier:
    miss = "" if (r["actual"] > 0) == (r["predicted_total"] > 0) else "  <- the sign differs live"
    print(f"{r['feature']} (an earlier layer): graph {r['predicted_total']:+.2f}, final norm frozen "
          f"{r['actual_final_frozen']:+.2f}, live {r['actual']:+.2f}{miss}")

# %% [markdown]
# **Explore the graph.** The slider sets the share of influence to keep and re-prunes; click a node on the map under the
# picture (laid out like it: a column per position, a row per layer) or pick one in the list
# (sorted by influence) to see its strongest inputs, its direct effect on the answer and, for a feature,
# its top contexts and the tokens its decoder direction promotes.

# %%
from course.widgets import GraphViewer

GraphViewer(model, graph, tcs, text.tokens[:48])

# %% [markdown]
# ### The field's tools: circuit-tracer
#
# `circuit-tracer` (Hanna et al., 2025) computes the same graphs; its viewer opens JSON graphs,
# and it loads transcoders as one safetensors file per layer. `course.attribution.export` writes
# both, so you can open this graph in its viewer (in its own environment: it needs a newer
# `transformers` than the course pins). There, serve the graphs' folder printed below with
# `circuit_tracer.frontend.local_server.serve(folder, port=8032)`, open
# `http://localhost:8032/index.html` and pick the graph from the list (`tools/README.md` has the
# one-line command).

# %%
import tempfile
from pathlib import Path

from course.attribution import graph_json, save_circuit_tracer_transcoders, save_graph_json

out_dir = Path(tempfile.mkdtemp())
save_circuit_tracer_transcoders(tcs, model, out_dir / "transcoders")
save_graph_json(pruned, out_dir / "graphs" / "calc-36-59.json", slug="calc-36-59", to_text=model.to_string)
exported = graph_json(pruned, "calc-36-59", to_text=model.to_string)
print(f"wrote {sorted(p.name for p in (out_dir / 'transcoders').iterdir())} to {out_dir / 'transcoders'}, and a "
      f"graph with {len(exported['nodes'])} nodes, {len(exported['links'])} links to {out_dir / 'graphs'} "
      f"(the folder to serve)")

# %% [markdown]
# ### The first digit: "calc: 36 + 59 =" → "9"
#
# The ones digit needs no carry. The tens digit does: 3 + 5 alone gives 8, and only the carry
# from 6 + 9 makes it 9. Build the graph one token earlier, where the model writes "9", and look
# for the pathways: features at the tens digits (the tens-digit pathway), at the ones digits
# (what a carry would have to come through) and at the last position. Then remove each operand
# digit's kept features *together* (a supernode) in the real model, and compare the change with
# the graph's prediction (the sum of their total effects: the graph is linear, so removals add).

# %%
from course.chapters.ch7_attribution_graphs.findings import operand_groups, position_roles, suppress_group

first = addition_graph(model, tcs, digit="tens")
first_routes = pathways(model, first)
print(f"{first['prompt']!r} -> {first['answer']!r} (p = {first['probability']:.3f}); kept "
      f"{first['stats']['features_kept']} of {first['stats']['features']} features, error share {first['error_share']:.2f}")
for r in first_routes[:6]:
    print(f"  layer {r['layer']} at {r['role'].strip():9s}: {len(r['features']):2d} features, influence "
          f"{r['influence']:.3f}, direct effect {r['direct']:+.2f}")
share = {role: sum(r["influence"] for r in first_routes if r["role"].strip() == role) for role in
         ("a ones", "b ones", "a tens", "b tens")}
total = sum(r["influence"] for r in first_routes)
print("kept features' influence by operand digit: " + ", ".join(f"{k} {v / total:.0%}" for k, v in share.items()))
removals = {role: suppress_group(model, first, nodes) for role, nodes in operand_groups(model, first).items() if nodes}
for role, r in removals.items():
    agree = "same sign" if (r["actual"] > 0) == (r["predicted"] > 0) else "opposite signs"
    print(f"remove the {r['n']} kept features at {role}: graph {r['predicted']:+.2f}, real {r['actual']:+.2f} "
          f"({agree}); the model then writes {r['top_after']!r} (P({first['answer']!r}) "
          f"{r['p_before']:.2f} -> {r['p_after']:.2f})")
fg, roles_first = first["graph"], position_roles(model, first["prompt"])
emb_ones = sum(float(first["pruned"].influence[fg.node_index("embedding", pos=p)])
               for p, r in enumerate(roles_first) if r in ("a ones", "b ones"))
print(f"the ones digits' token embeddings (read through the frozen attention) carry influence {emb_ones:.3f}; "
      f"the kept features at the ones digits {share['a ones'] + share['b ones']:.3f}")
carry_broken = [role for role, r in removals.items() if "ones" in role and r["top_after"] == "8"]
print("removing the ones digits' features " + (f"turns 9 into 8 (the carry lost) at {carry_broken}" if carry_broken
      else "does not turn 9 into 8: in this graph the carry does not run through features at the ones digits"))

# %% [markdown]
# Read it against chapter 6: there the carry was a direction in the stream *at the position that
# writes the tens digit*, put there by attention from the ones digits. A transcoder feature at a
# ones digit is one place the carry could be computed; attention carrying the ones digits' token
# embeddings straight to the last position, where the last position's features combine them, is
# another. The last lines above compare the two routes' influence and say whether removing the
# ones digits' features loses the carry. Where removing a supernode changes the answer, compare
# what it writes with what each pathway's story predicts (removing the tens digits' features
# should leave a wrong tens digit).

# %% [markdown]
# ## 6. A second graph: a fact
#
# Chapter 4 traced facts causally: which MLP, restored at which position, brings the answer
# back. Does the attribution graph of a fact point at the same place? The graph of the first fact
# the model gets right (chapter 4's phrasing), and its kept features' influence by layer and by
# the position's role, next to a small causal trace computed here. The two differ in scope: the
# graph explains *one* fact (the first of the six), while the causal trace averages over six, so
# agreement says this fact is recalled where facts typically are.

# %%
from course.chapters.ch4_mlp_memories.findings import recall_location
from course.chapters.ch7_attribution_graphs.findings import fact_graph, influence_by_bucket
from course.tracing import BUCKETS, average_traces, known_facts

fact = fact_graph(model, tcs)
share = influence_by_bucket(fact)
print(f"{fact['fact'].text!r} -> {fact['answer']!r} (p = {fact['probability']:.2f}); error share "
      f"{fact['error_share']:.2f} (the sum's graph: {found['error_share']:.2f}); "
      f"{fact['stats']['features_kept']} features kept")
if fact["error_share"] > 1.5 * found["error_share"]:
    print(f"the error nodes carry {fact['error_share'] / found['error_share']:.1f}x the sum's share here: what the "
          f"transcoders miss of the MLPs matters more for this fact, so read the fact graph's features as a "
          f"partial account")
fig, ax = plt.subplots(figsize=(8, 3))
im = ax.imshow(share, aspect="auto", cmap="Blues")
for (layer_, bucket_), v in zip(((l_, b_) for l_ in range(share.shape[0]) for b_ in range(share.shape[1])),
                                share.flatten().tolist()):
    ax.text(bucket_, layer_, f"{v:.0%}", ha="center", va="center", fontsize=8,
            color="white" if v > 0.6 * float(share.max()) else "black")
ax.set_xticks(range(len(BUCKETS)), BUCKETS, rotation=30, ha="right", fontsize=8)
ax.set_yticks(range(share.shape[0])), ax.set_ylabel("layer")
ax.set_title(f"{fact['fact'].text!r}: kept features' influence, share by layer x position")
fig.colorbar(im, ax=ax, format=lambda v, _: f"{v:.0%}")
plt.tight_layout()
plt.show()
before_end = share[:, :-1]
layer_g, bucket_g = divmod(int(before_end.argmax()), before_end.shape[1])
traced = recall_location(average_traces(model, known_facts(model, n=6), window=1, n_samples=4, progress=False))
print(f"graph: the strongest group before the last token is layer {layer_g} at {BUCKETS[bucket_g]!r} "
      f"({float(before_end.max()):.0%} of the influence); causal tracing (chapter 4, 6 facts): the MLP at the "
      f"subject's last token that matters most is layer {traced['mlp_layer_at_subject']}")

# %% [markdown]
# ## Summary
#
# - A transcoder replaces an MLP by sparse features with input and output directions; FVU, L0 and
#   the replaced model's loss say how faithful it is.
# - Freezing attention and layer norms and adding error terms makes a linear local replacement model
#   that reproduces the logits exactly; one backward pass per target gives every direct effect.
# - Influence (all paths, by absolute size) prunes the graph to a small share of its features (the
#   closing note gives the count); supernodes group them into pathways; suppressing features in
#   the real model tests the graph's claims, and freezing the final norm's scale separates the norm's
#   part of a disagreement from the later MLPs'.
# - The decomposition of the answer's logit shows how much the features, the error nodes and the
#   biases each contribute: the graph says which computations the answer goes through, which need
#   not be why it wins.

# %%
top_routes = "; ".join(f"layer {r['layer']} at {r['role'].strip()} ({r['influence']:.2f})" for r in routes[:4])
print(f"Closing note: the graph of {prompt!r} -> {found['answer']!r} keeps {stats['features_kept']} of "
      f"{stats['features']} features ({stats['feature_influence_kept']:.0%} of their influence), error share "
      f"{found['error_share']:.2f}. Its demeaned logit {parts['logit']:.2f}: constant {parts['constant']:+.2f}, "
      f"features {parts['feature']:+.2f}, error nodes {parts['error']:+.2f}, embeddings {parts['embedding']:+.2f}. Pathways by influence: {top_routes}. Suppressing "
      f"{agreement['operand']['feature']} in the real model moves the answer's logit by "
      f"{agreement['operand']['actual']:+.2f} (graph: {agreement['operand']['predicted_total']:+.2f}) and "
      f"P({found['answer']!r}) from {agreement['operand']['p_before']:.3f} to {agreement['operand']['p_after']:.3f}; "
      f"signs agree for {agreement['sign_agreement']:.0%} of the top features.")
