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
#
# The prompt is `"calc: 36 + 59 = 9"`: the model has written the tens digit of 95 and must
# now write the ones digit, `"5"`. Every number below is computed in front of you.

# %% tags=["module"]
import torch
from torch import Tensor

# %% tags=["setup"]
import time

import matplotlib.pyplot as plt

import course
from course.attribution import LocalReplacement, attribute, load_shipped_transcoders, prune
from course.checks import ch7_attribution_graphs as check

started = time.perf_counter()
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
# (`blocks.l.hook_mlp_out`): $\hat y = \sigma(x W_{enc} + b_{enc}) W_{dec} + b_{dec}$. Where an
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
# Train one, for layer 0 on a small budget (the toolkit's trainer, chapter 5's, with a
# progress bar), and measure it with your function on held-out text. The rest of the chapter
# uses the **shipped** transcoders, one per layer, trained longer
# (`python -m course.attribution.train_transcoders`).

# %%
from course.attribution import evaluate_transcoders, train_transcoders  # noqa: E402
from course.attribution.transcoders import input_site, output_site  # noqa: E402
from course.saes import read_sites  # noqa: E402
from course.saes.metrics import evaluation_tokens  # noqa: E402

mine, _ = train_transcoders(model, layers=[0], tokens=30_000, d_sae=256, batch_size=1024, progress=True)
held_out = evaluation_tokens(model, n_rows=16)
sites = read_sites(model, held_out, [input_site(0), output_site(0)])
x0, y0 = sites[input_site(0)].flatten(0, 1), sites[output_site(0)].flatten(0, 1)
loss_fn = transcoder_loss if check.transcoder_loss(transcoder_loss, quiet=True) else None
if loss_fn is not None:
    for name, tc in (("yours (30k tokens)", mine[0]), ("shipped", tcs[0])):
        loss, fvu = loss_fn(tc, x0, y0, 0.0)
        print(f"layer 0, {name}: loss {float(loss):.3f}, FVU {float(fvu):.3f}")

# %% [markdown]
# Every shipped transcoder, measured on held-out corpus text: FVU, **L0** (active features per
# token), the share of **dead** features (never active on this text), and the model's loss with
# that MLP replaced; then with *every* MLP replaced at once, against the clean model and against
# every MLP's output zeroed.

# %%
metrics = evaluate_transcoders(model, tcs, held_out)
for m_ in metrics["layers"]:
    print(f"layer {m_.layer}: FVU {m_.fvu:.3f}, L0 {m_.l0:.1f}, dead {m_.dead:.0%}, loss with it replaced "
          f"{m_.alone_loss:.3f}")
print(f"loss: clean {metrics['clean_loss']:.3f}; every MLP replaced {metrics['replaced_loss']:.3f}; "
      f"every MLP zeroed {metrics['mlps_zeroed_loss']:.3f}")

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
    # Hint: rep.model has W_V [layer, head, d_model, d_head], b_V [layer, head, d_head], W_O, b_O,
    # ln1_w, ln1_b, ln_final_w, ln_final_b, W_U, b_U.
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
# logit target is the answer's logit *minus the mean logit*: a softmax cannot see a shift of
# every logit.

# %% tags=["exercise"]
def logit_edges(rep, token: int) -> tuple[Tensor, Tensor, Tensor]:
    """Direct effects on the last position's (logit[token] - mean logit) in the replacement model.

    Returns (feature edges [layer, pos, d_sae], zero where a feature is inactive;
    error edges [layer, pos]; embedding edges [pos]).
    """
    # Hint: make rep.embedding() and rep.mlp_writes() leaves with requires_grad, run
    # rep.forward(embedding, writes)["logits"] with gradients switched on (torch.enable_grad), then
    # torch.autograd.grad. A feature's write is its activation times tc.W_dec[feature].
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
# $\text{influence} = v(W + W^2 + \dots) = v\left((I - W)^{-1} - I\right)$.

# %% tags=["exercise"]
def influence(adjacency: Tensor, logit_weights: Tensor) -> Tensor:
    """Every node's total influence on the logits, ``[n_nodes]``.

    adjacency: [n_nodes, n_nodes], adjacency[target, source] (a DAG: no cycles);
    logit_weights: [n_nodes], the logits' probabilities (summing to 1), zero elsewhere.
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
from course.attribution.pruning import error_share  # noqa: E402
from course.findings_ch7 import addition_graph, pathways, supernode_groups, top_features  # noqa: E402

found = addition_graph(model, tcs)
pruned, stats = found["pruned"], found["stats"]
print(f"kept {stats['features_kept']} of {stats['features']} features ({stats['feature_fraction_kept']:.1%}), "
      f"carrying {stats['feature_influence_kept']:.0%} of their influence; {stats['edges_kept']} of "
      f"{stats['edges']:,} edges ({stats['edge_fraction_kept']:.1%}); error share {found['error_share']:.2f}")

# %% [markdown]
# ## 5. The graph for "calc: 36 + 59 = 9" → "5"
#
# Group the kept features by layer and by the role of the position they sit at (the operands'
# digits, "=", the tens digit already written): each group is a stage of a pathway, and the
# groups become **supernodes**, their edges the sums of their members' edges.

# %%
from course.attribution import supernodes  # noqa: E402

routes = pathways(model, found)
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

# %% [markdown]
# **What the features read.** A feature's top-activating contexts on corpus text, and for the
# most influential feature on an operand's ones digit its mean activation by the digit at that
# position over every two-digit sum (`digit_profile`): how much of it is "this digit" and how
# much is "a ones digit in a sum".

# %%
from course.findings_ch7 import digit_profile, position_roles  # noqa: E402
from course.neurons import text_stream  # noqa: E402
from course.saes.features import feature_activations, feature_contexts  # noqa: E402

text = text_stream(model, n_rows=96, row_len=48, seed=0)
roles = position_roles(model, prompt)
for node in top_features(found, 6):
    d = graph.describe(node)
    acts = feature_activations(model, tcs[d["layer"]], text.tokens)
    ctx = feature_contexts(model, text.tokens, acts, d["feature"], k=3, width=8)
    print(f"{graph.label(node)} ({roles[d['pos']].strip()}), influence {float(pruned.influence[node]):.3f}:")
    for c in ctx:
        print(f"    {''.join(c.tokens)!r} -> {c.activations[c.at]:.2f}")
operand = next(n for n in top_features(found, 40) if roles[graph.describe(n)["pos"]].strip() in ("a ones", "b ones"))
od = graph.describe(operand)
profile = digit_profile(model, tcs, od["layer"], od["feature"], roles[od["pos"]])
print(f"{graph.label(operand)}: mean activation by the digit at its position "
      f"{[round(float(v), 2) for v in profile]}; peaks at {int(profile.argmax())}")

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
    """Change of the last position's (logit[token] - mean logit) when ``direction [d_model]`` is
    subtracted from blocks.{layer}.hook_mlp_out at position ``pos`` only. tokens: [1, pos]. A scalar."""
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
# pre-activation (`total_effects`). The table compares it with your intervention in the real model.

# %%
from course.findings_ch7 import suppression_agreement, validate_by_suppression  # noqa: E402

effect_fn = suppression_effect if check.suppression_effect(suppression_effect, quiet=True) else None
checked = validate_by_suppression(model, found, top_features(found, 10))
for r in checked:
    d = graph.describe(r["node"])
    mine_ = f", yours {float(effect_fn(model, rep.tokens, d['layer'], d['pos'], tcs[d['layer']].W_dec[d['feature']] * d['activation'], answer)):+.2f}" \
        if effect_fn else ""
    print(f"{r['feature']:20s} graph predicts {r['predicted_total']:+6.2f}, real model {r['actual']:+6.2f}{mine_}; "
          f"P({found['answer']!r}) {r['p_before']:.3f} -> {r['p_after']:.3f}, top token {r['top_after']!r}")
agreement = suppression_agreement(model, found, checked)
print(f"sign agrees for {agreement['sign_agreement']:.0%} of the {len(checked)} features; "
      f"the operand feature with the largest predicted effect: {agreement['operand']['feature']} "
      f"(graph {agreement['operand']['predicted_total']:+.2f}, real {agreement['operand']['actual']:+.2f}, "
      f"answer becomes {agreement['operand']['top_after']!r})")

# %% [markdown]
# Where the graph and the model disagree in size, one reason is the layer norms: the graph froze
# their scales, while the real model recomputes them after the intervention, so removing a large
# write changes the final layer norm's scale too. Another is attention: the graph froze the
# patterns as well.
#
# **Explore the graph.** The threshold slider re-prunes; click a node on the map under the
# picture (laid out like it: a column per position, a row per layer) or pick one in the list
# (sorted by influence) to see its strongest inputs, its direct effect on the answer and, for a feature,
# its top contexts and the tokens its decoder direction promotes.

# %%
from course.widgets import GraphViewer  # noqa: E402

GraphViewer(model, graph, tcs, text.tokens[:48])

# %% [markdown]
# ### The field's tools: circuit-tracer
#
# `circuit-tracer` (Hanna et al., 2025) computes the same graphs; its viewer opens JSON graphs,
# and it loads transcoders as one safetensors file per layer. `course.attribution.export` writes
# both, so you can open this graph in its viewer (in its own environment: it needs a newer
# `transformers` than the course pins).

# %%
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from course.attribution import graph_json, save_circuit_tracer_transcoders, save_graph_json  # noqa: E402

out_dir = Path(tempfile.mkdtemp())
save_circuit_tracer_transcoders(tcs, model, out_dir / "transcoders")
save_graph_json(pruned, out_dir / "calc-36-59.json", slug="calc-36-59", to_text=model.to_string)
exported = graph_json(pruned, "calc-36-59", to_text=model.to_string)
print(f"wrote {sorted(p.name for p in (out_dir / 'transcoders').iterdir())} and a graph with "
      f"{len(exported['nodes'])} nodes, {len(exported['links'])} links")

# %% [markdown]
# ## 6. A second graph: a fact
#
# Chapter 4 traced facts causally: which MLP, restored at which position, brings the answer
# back. Does the attribution graph of a fact point at the same place? The graph of the first fact
# the model gets right (chapter 4's phrasing), and its kept features' influence by layer and by
# the position's role, next to a small causal trace (6 facts) computed here:

# %%
from course.findings_ch4 import recall_location  # noqa: E402
from course.findings_ch7 import fact_graph, influence_by_bucket  # noqa: E402
from course.tracing import BUCKETS, average_traces, known_facts  # noqa: E402

fact = fact_graph(model, tcs)
share = influence_by_bucket(fact)
print(f"{fact['fact'].text!r} -> {fact['answer']!r} (p = {fact['probability']:.2f}); error share "
      f"{fact['error_share']:.2f}; {fact['stats']['features_kept']} features kept")
fig, ax = plt.subplots(figsize=(7, 2.2))
ax.imshow(share, cmap="Blues")
ax.set_xticks(range(len(BUCKETS)), BUCKETS, fontsize=7), ax.set_ylabel("layer"), ax.set_title("kept features' influence")
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
# - Influence (all paths) prunes the graph to a few percent of its features; supernodes group them
#   into pathways; suppressing features in the real model tests the graph's claims.

# %%
top_routes = "; ".join(f"layer {r['layer']} at {r['role'].strip()} ({r['influence']:.2f})" for r in routes[:4])
print(f"Closing note: the graph of {prompt!r} -> {found['answer']!r} keeps {stats['features_kept']} of "
      f"{stats['features']} features ({stats['feature_influence_kept']:.0%} of their influence), error share "
      f"{found['error_share']:.2f}. Pathways by influence: {top_routes}. Suppressing "
      f"{agreement['operand']['feature']} in the real model moves the answer's logit by "
      f"{agreement['operand']['actual']:+.2f} (graph: {agreement['operand']['predicted_total']:+.2f}) and "
      f"P({found['answer']!r}) from {agreement['operand']['p_before']:.3f} to {agreement['operand']['p_after']:.3f}; "
      f"signs agree for {agreement['sign_agreement']:.0%} of the top features. "
      f"This notebook ran in {time.perf_counter() - started:.0f} s after loading its imports.")
