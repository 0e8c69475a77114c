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
# # Chapter 4 — MLPs as key–value memories
#
# Two thirds of a GPT-2 block's weights sit in its MLP, and in the models ROME studied, MLPs were
# where facts seemed to live; section 6 traces where this model needs them.
# An MLP layer computes $\text{GELU}(x W_{in} + b_{in})\, W_{out} + b_{out}$: each of its
# $d_{mlp}$ **neurons** reads the stream along one column of $W_{in}$ (its **key**: the
# pattern that makes it fire) and, in proportion to how strongly it fires, adds one row of
# $W_{out}$ to the stream (its **value**). Geva et al. (2021) read feed-forward layers this
# way, as key–value memories; in 2022 they showed that values promote concepts you can
# read in the vocabulary. Meng et al. (2022, ROME) went further: they located where GPT
# recalls a fact by **causal tracing** and rewrote one fact with a **rank-one edit** of one
# MLP.
#
# The course model learned invented facts — the capital, language and sport of countries
# that do not exist — so nothing it says about them can come from anywhere but its
# training. In this chapter you will collect neuron activations over a stream of text;
# find what makes neurons fire (keys) and what they write (values); measure how often the
# two agree; attribute a fact's answer to single neurons; trace where a fact is recalled;
# and edit one fact, measuring what the edit changes and what it leaves alone. Every
# statement about the model is computed in front of you.

# %% tags=["module"]
import torch
from torch import Tensor
from tqdm import tqdm   # a text progress bar

from course.tracing import subject_span

# %% tags=["setup"]
import course
from course.chapters.ch4_mlp_memories import checks as check
from course.neurons import collect_activations, describe_neuron, text_stream, value_tokens
from course.widgets import FactEditor, NeuronExplorer, TraceExplorer

torch.set_grad_enabled(False)
model = course.load_model()
stream = text_stream(model, n_rows=128, row_len=64, seed=0)   # a fixed stream of the course corpus
from course.data import facts

print(f"{len(facts.countries())} invented countries x {len(facts.RELATIONS)} relations; "
      f"{model.cfg.n_layers} layers of {model.cfg.d_mlp} neurons; a stream of {stream.tokens.numel()} tokens "
      f"from the corpus's {', '.join(stream.kind_names)} documents")

# %% [markdown]
# ## 1. Neuron activations over a stream of text
#
# A neuron's activation is its entry of the MLP's hidden layer **after** the GELU, the
# hook point `blocks.{layer}.mlp.hook_post` of shape `[batch, pos, d_mlp]`. To see what a
# neuron responds to, collect its activations over a lot of text. Run the model on the
# rows of `stream.tokens` a batch at a time (memory stays small whatever the stream's
# length) and keep only that hook point; show a progress bar where the work takes more
# than a second (`tqdm(..., delay=1)` does exactly that).

# %% tags=["exercise"]
def neuron_activations(model, tokens: Tensor, layer: int, batch_size: int = 16) -> Tensor:
    """Post-GELU activations of every neuron of ``layer`` on every token.

    tokens: [row, pos] token ids. Returns [row, pos, d_mlp], computed ``batch_size`` rows at a time.
    """
    # Hint: model.run_with_cache(rows, names_filter=f"blocks.{layer}.mlp.hook_post"), then torch.cat.
    ### BEGIN SOLUTION
    name = f"blocks.{layer}.mlp.hook_post"
    parts = []
    for start in tqdm(range(0, tokens.shape[0], batch_size), delay=1, leave=False):
        _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=name)
        parts.append(cache[name])
    return torch.cat(parts)
    ### END SOLUTION


# %% tags=["check"]
check.neuron_activations(neuron_activations)

# %% tags=["tests"] points=1
check.neuron_activations(neuron_activations, quiet=True).require()
### BEGIN HIDDEN TESTS
check.neuron_activations(neuron_activations, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The toolkit's `collect_activations` does the same for every layer at once; the rest of
# the chapter uses its result, `acts [layer, row, pos, d_mlp]`.

# %%
acts = collect_activations(model, stream.tokens)
print(f"acts: {list(acts.shape)}; share of activations above 0 by layer:",
      [f"{float((acts[l] > 0).float().mean()):.2f}" for l in range(model.cfg.n_layers)])

# %% [markdown]
# ## 2. Keys: the contexts that make a neuron fire
#
# A neuron's **top-activating contexts** are the positions where it fires most. Return
# their activations and where they are, as (row, position) pairs; the explorer below
# shows each context with the activating token marked.

# %% tags=["exercise"]
def top_contexts(acts: Tensor, neuron: int, k: int = 10) -> tuple[Tensor, Tensor]:
    """The ``k`` largest activations of one neuron and where they occur.

    acts: [row, pos, d_mlp] (one layer). Returns (values [k], where [k, 2]) with each row of
    ``where`` a (row, position) pair; largest first.
    """
    # Hint: flatten the [row, pos] activations of the neuron, topk, then turn each flat index back into two.
    ### BEGIN SOLUTION
    values, flat = acts[:, :, neuron].reshape(-1).topk(k)
    width = acts.shape[1]
    return values, torch.stack([flat // width, flat % width], dim=1)
    ### END SOLUTION


# %% tags=["check"]
check.top_contexts(top_contexts)

# %% tags=["tests"] points=1
check.top_contexts(top_contexts, quiet=True).require()
### BEGIN HIDDEN TESTS
check.top_contexts(top_contexts, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Describing a neuron by reading its contexts takes a human; counting does not. For each
# neuron the toolkit counts, over its 20 top contexts, the activating token, the token
# that follows, and the kind of document (IOI story, plain sentences, facts, sums), and
# ranks the neurons by how much one token and one kind dominate. Here are the clearest
# neurons of each layer, each described by the code. (A neuron that fires on `<|endoftext|>`
# marks where a document starts; its kind is then only the mix of documents that follow.)

# %%
from course.chapters.ch4_mlp_memories.findings import clearest_neurons

clear = clearest_neurons(model, stream, acts, per_layer=2)
for d in clear:
    print(d)

# %% [markdown]
# Explore any neuron: pick a layer and a neuron, or type a token to find the neuron of
# that layer whose value promotes it most. The contexts are coloured by activation, the
# activating token boxed.

# %%
NeuronExplorer(model, stream, acts, layer=clear[0].layer, neuron=clear[0].neuron)

# %% [markdown]
# ## 3. Values: what a neuron writes
#
# When a neuron fires with activation $a$, the MLP adds $a\,W_{out}[\ell, n]$ to the
# stream. Read that row through the rest of the model's output as if nothing came after
# it: the final layer norm centres it and multiplies it by its weight (its division by
# the overall scale changes every logit by the same factor), then the unembedding turns
# it into one number per token. The largest entries are the tokens the neuron
# **promotes**, the most negative the ones it **suppresses**.

# %% tags=["exercise"]
def neuron_value_logits(model, layer: int, neurons: Tensor) -> Tensor:
    """Direct effect of some neurons' values on every next-token logit (per unit of activation).

    neurons: [n] neuron indices. Returns [n, d_vocab]: each W_out row, centred, times
    model.ln_final_w, through model.W_U.
    """
    ### BEGIN SOLUTION
    rows = model.W_out[layer, neurons]                                  # [n, d_model]
    centred = rows - rows.mean(dim=-1, keepdim=True)
    return (centred * model.ln_final_w) @ model.W_U
    ### END SOLUTION


# %% tags=["check"]
check.neuron_value_logits(neuron_value_logits)

# %% tags=["tests"] points=1
check.neuron_value_logits(neuron_value_logits, quiet=True).require()
### BEGIN HIDDEN TESTS
check.neuron_value_logits(neuron_value_logits, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The values of the clearest neurons found above, next to what their keys respond to:

# %%
for d in clear:
    up, down = value_tokens(model, d.layer, d.neuron, k=6)
    print(f"L{d.layer}N{d.neuron} fires on {d.token!r} ({d.kind}); followed by {d.next_token!r}\n"
          f"    promotes {up}\n    suppresses {down}")

# %% [markdown]
# ## 4. Do keys and values agree?
#
# If a neuron is a memory "after this pattern, this token comes next", its value should
# promote the token that actually follows its top contexts. Geva et al. measured this
# **agreement** and found it rises in the upper layers of their model. For each neuron,
# take its `k_contexts` top contexts (the last position of a row has no next token in
# the row: leave it out), and count the share whose next token is among the value's
# `k_tokens` most promoted tokens.

# %% tags=["exercise"]
def key_value_agreement(acts: Tensor, tokens: Tensor, value_logits: Tensor, k_contexts: int = 10,
                        k_tokens: int = 10) -> Tensor:
    """Per neuron, the share of its top contexts whose next token its value promotes.

    acts: [row, pos, d_mlp] (one layer); tokens: [row, pos]; value_logits: [d_mlp, d_vocab].
    Returns [d_mlp], each in [0, 1].
    """
    # Hint: acts[:, :-1] pairs with tokens[:, 1:]; topk along the flattened (row, pos) axis gives [k_contexts, d_mlp].
    ### BEGIN SOLUTION
    d_mlp = acts.shape[-1]
    next_tokens = tokens[:, 1:].reshape(-1)
    where = acts[:, :-1].reshape(-1, d_mlp).topk(k_contexts, dim=0).indices    # [k_contexts, d_mlp]
    promoted = value_logits.topk(k_tokens, dim=-1).indices                     # [d_mlp, k_tokens]
    following = next_tokens[where].T                                           # [d_mlp, k_contexts]
    hit = (following[:, :, None] == promoted[:, None, :]).any(-1)
    return hit.float().mean(-1)
    ### END SOLUTION


# %% tags=["check"]
check.key_value_agreement(key_value_agreement)

# %% tags=["tests"] points=2
check.key_value_agreement(key_value_agreement, quiet=True).require()
### BEGIN HIDDEN TESTS
check.key_value_agreement(key_value_agreement, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Measured on every layer, against chance: the same count with each neuron given another
# neuron's value (a random shuffle within the layer), 50 times. The p-value is the share of
# shuffles (counting the real pairing) that agree at least as well as the real one; a layer
# is above chance only where it is below 0.05.

# %%
from course.chapters.ch4_mlp_memories.findings import agreement_report, key_value_agreement_summary

agreement = key_value_agreement_summary(model, acts, stream.tokens)
for line in agreement_report(agreement):
    print(line)

# %% [markdown]
# ## 5. Which neurons write a fact's answer?
#
# Chapter 1 attributed the logits to whole components. Split the MLPs' share further, to
# single neurons: neuron $n$ of layer $\ell$ writes $a_{\ell n} W_{out}[\ell, n]$ at the last
# position; through the final layer norm (centred, divided by the scale the model really
# used there, times its weight) and the answer's unembedding column, that is its **direct
# logit attribution**.

# %% tags=["exercise"]
def neuron_attribution(cache, model, answer: int) -> Tensor:
    """Every neuron's direct contribution to the logit of ``answer`` at the last position.

    ``cache`` of one prompt (batch 1). Returns [layer, d_mlp].
    """
    # Hint: cache["post", layer][0, -1] is [d_mlp]; cache["ln_final.hook_scale"][0, -1] is the scale.
    ### BEGIN SOLUTION
    post = torch.stack([cache["post", layer][0, -1] for layer in range(model.cfg.n_layers)])   # [layer, d_mlp]
    rows = model.W_out - model.W_out.mean(dim=-1, keepdim=True)                                  # [layer, d_mlp, d_model]
    per_unit = (rows * model.ln_final_w) @ model.W_U[:, answer]                                  # [layer, d_mlp]
    return post * per_unit / cache["ln_final.hook_scale"][0, -1]
    ### END SOLUTION


# %% tags=["check"]
check.neuron_attribution(neuron_attribution)

# %% tags=["tests"] points=2
check.neuron_attribution(neuron_attribution, quiet=True).require()
### BEGIN HIDDEN TESTS
check.neuron_attribution(neuron_attribution, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Over many facts the model gets right: how concentrated is the answer's neuron
# attribution, and which layer's neurons write it?

# %%
from course.chapters.ch4_mlp_memories.findings import neuron_attribution_summary
from course.tracing import known_facts

traced = known_facts(model, n=30)
attribution = neuron_attribution_summary(model, traced, top=10)
print(f"{len(traced)} facts, e.g. {traced[0].text!r} -> {model.to_string(traced[0].answer)!r}")
print(f"the top {attribution['top']} of {model.cfg.n_layers * attribution['d_mlp']} neurons carry "
      f"{attribution['top_share']:.0%} of the neurons' positive attribution to the answer")
print("share by layer:", [f"{x:.2f}" for x in attribution["by_layer"]],
      f"-> most from layer {attribution['main_layer']}")

# %% [markdown]
# ## 6. Causal tracing: where is the fact recalled?
#
# Attribution sees only direct writes. ROME's **causal tracing** asks what is *needed*.
# Run the prompt three times: clean; with Gaussian noise (3× the standard deviation of the
# subjects' embeddings) added to the subject's token embeddings, which ruins the answer;
# and corrupted again, but with one internal state — the residual stream after layer
# $\ell$, or the MLP's output, or the attention's output, at position $i$ — put back to
# its clean value. Where putting one state back recovers the answer, that state carries
# the fact. With a **window**, the outputs of `window` consecutive layers around $\ell$
# (from $\ell - \lfloor w/2 \rfloor$) are restored together.
#
# Write the trace for one prompt: `noise [sample, subject token, d_model]` is added at
# `hook_embed` on the subject positions `[start, end)`, and the probability of the answer
# at the last position is averaged over the noise samples.

# %% tags=["exercise"]
def causal_trace(model, tokens: Tensor, subject: tuple[int, int], answer: int, noise: Tensor,
                 kind: str = "resid", window: int = 1) -> Tensor:
    """Answer probability with the subject noised and one clean state restored.

    tokens: [1, pos]; noise: [sample, end - start, d_model]; kind: "resid" (hook_resid_post),
    "mlp" (hook_mlp_out) or "attn" (hook_attn_out). Returns [layer, pos]: entry (l, i) restores
    that output at position i in the window of ``window`` layers centred on l, from
    l - window // 2 to l - window // 2 + window - 1, clipped to the model's layers (so near the
    first and the last layer the window holds fewer layers).
    """
    # Hint: run_with_hooks on tokens.repeat(n_samples, 1) with a hook on "hook_embed" that adds the
    # noise, and hooks on the restored points that copy the clean cache's value at position i.
    ### BEGIN SOLUTION
    point = {"resid": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}[kind]
    n_layers, n_pos = model.cfg.n_layers, tokens.shape[1]
    _, clean = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(point))
    start, end = subject
    batch = tokens.repeat(noise.shape[0], 1)

    def corrupt(x, hook):
        x = x.clone()
        x[:, start:end] += noise
        return x

    out = torch.zeros(n_layers, n_pos)
    for layer in range(n_layers):
        first = max(0, layer - window // 2)
        restored = range(first, min(n_layers, layer - window // 2 + window))
        for pos in range(n_pos):
            def restore(x, hook, pos=pos):
                x = x.clone()
                x[:, pos] = clean[hook.name][0, pos]
                return x

            hooks = [("hook_embed", corrupt)] + [(f"blocks.{l}.{point}", restore) for l in restored]
            out[layer, pos] = model.run_with_hooks(batch, hooks)[:, -1].softmax(-1)[:, answer].mean()
    return out
    ### END SOLUTION


# %% tags=["check"]
check.causal_trace(causal_trace)

# %% tags=["tests"] points=3
check.causal_trace(causal_trace, quiet=True).require()
### BEGIN HIDDEN TESTS
check.causal_trace(causal_trace, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# One prompt is anecdote. The toolkit's `average_traces` runs the same trace (batched over
# positions) on the facts from section 5, aligns the positions by their role — before the
# subject, the subject's first, middle and last tokens, after the subject, the last
# token — and averages the share of the answer's probability that each restoration
# brings back, $(p_{restored} - p_{corrupt}) / (p_{clean} - p_{corrupt})$.

# %%
import matplotlib.pyplot as plt

from course.chapters.ch4_mlp_memories.findings import recall_location
from course.tracing import BUCKETS, average_traces, plot_average

average = average_traces(model, traced, window=1, n_samples=8)
plot_average(average, f"single states, {average.n_facts} facts")
plt.show()
where = recall_location(average)
print(f"{average.n_facts} facts: answer probability clean {average.clean:.2f}, subject noised {average.corrupt:.2f}")
print(f"largest MLP effect: layer {where['mlp_peak'][0]} at the {where['mlp_peak'][1]} ({where['mlp_peak_value']:.2f})")
print(f"MLPs at the subject's last token: best is layer {where['mlp_layer_at_subject']} "
      f"({where['mlp_at_subject']:.2f})")
print(f"attention at the last token: layer {where['attn_layer_at_end']} recovers {where['attn_at_end']:.2f}")
print("restoring the stream at the subject's last token recovers",
      [f"{x:.2f}" for x in where["resid_at_subject"]], "by layer; at the last token",
      [f"{x:.2f}" for x in where["resid_at_end"]])
print(f"the MLPs matter most at the {where['mlp_peak'][1]}: "
      + ("on the subject, as ROME found in GPT-2 XL" if where["recalled_at_subject"] else "unlike GPT-2 XL in ROME")
      + ("; attention carries the subject's information to the last token" if where["moved_by_attention"] else ""))


# %% [markdown]
# Two things to keep in mind when reading the trace. An MLP in layer 0 sees little more than
# the token itself (attention has mixed in only one layer's worth of context), so where the best
# MLP at the subject is layer 0, it behaves more like an **extended embedding**, a richer vector
# per token, than like a memory looked up in the middle of the network. And Hase et al. (2023,
# "Does localization inform editing?") found that where causal tracing localises a fact does not
# predict which layer edits it best. Section 7 edits at the traced layer anyway and measures
# what that does, side effects included.
# %% [markdown]
# ROME also restores a **window** of consecutive layers' MLP (or attention) outputs at once:
# a single MLP may matter only together with its neighbours. Here with a window of half
# the model's layers (at least two):

# %%
windowed = average_traces(model, traced, kinds=("mlp", "attn"), window=max(2, model.cfg.n_layers // 2), n_samples=8)
plot_average(windowed, f"windows of {windowed.window} layers")
plt.show()
at_subject, at_end = BUCKETS.index("subject, last"), BUCKETS.index("last token")
for kind in windowed.kinds:
    best = windowed.recovered[kind].max(0).values
    print(f"{kind} windows: best at the subject's last token {float(best[at_subject]):.2f}, "
          f"at the last token {float(best[at_end]):.2f}")

# %% [markdown]
# Trace a prompt of your own: type it, name the subject (a word or words of the prompt),
# and choose the window. The answer traced is the model's own top prediction.

# %%
TraceExplorer(model, traced[1].text, traced[1].country)

# %% [markdown]
# ## 7. Editing one fact with a rank-one update
#
# If an MLP's output matrix $W$ (`model.W_out[layer]`, `[d_mlp, d_model]`) is a memory that
# maps keys $k$ (post-GELU activations, rows) to values $kW$, then changing one fact is
# changing what one key maps to. ROME asks for the smallest change $\Delta W$ such that the
# subject's key $k_*$ maps to a new value $v_*$, where "smallest" means disturbing the
# outputs for the *other* keys least. Measuring that disturbance with the keys' uncentred
# second moment $C = \mathbb{E}[k^\top k]$, the answer is a closed form:
#
# $$\Delta W = \frac{(C^{-1} k_*^\top)\,(v_* - k_* W)}{k_* C^{-1} k_*^\top}.$$
#
# $C$ comes from the activations you collected; $k_*$ is the key at the subject's last
# token, averaged over a few prefixes; $v_*$ is found by a few steps of gradient descent
# on a vector added to the MLP's output there, until the new answer wins
# (`course.editing.optimize_value`). Write the key and the two pieces of linear algebra.
#
# The key first. The MLP sees the subject's last token after everything before it, so the
# key depends a little on the text in front of the sentence; averaging it over a few
# prefixes gives a key that works whatever comes before.
# `subject_span(model, text, subject)` (from `course.tracing`) gives the subject's token positions.

# %% tags=["exercise"]
def subject_key(model, layer: int, texts: list[str], subject: str) -> Tensor:
    """The MLP key of ``subject``: layer ``layer``'s post-GELU activation at the subject's last
    token (a subject may be several tokens), averaged over ``texts`` (the same sentence after
    different prefixes).

    Returns [d_mlp].
    """
    # Hint: subject_span(model, text, subject) is (start, end): the last subject token is at end - 1.
    ### BEGIN SOLUTION
    keys = []
    for text in texts:
        last = subject_span(model, text, subject)[1] - 1
        _, cache = model.run_with_cache(text, names_filter=f"blocks.{layer}.mlp.hook_post")
        keys.append(cache["post", layer][0, last])
    return torch.stack(keys).mean(0)
    ### END SOLUTION


# %% tags=["check"]
check.subject_key(subject_key)

# %% tags=["tests"] points=1
check.subject_key(subject_key, quiet=True).require()
### BEGIN HIDDEN TESTS
check.subject_key(subject_key, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"]
def key_second_moment(acts: Tensor) -> Tensor:
    """The uncentred second moment of the keys, E[k kᵀ].

    acts: [..., d_mlp] (any leading dimensions, all averaged over). Returns [d_mlp, d_mlp].
    """
    ### BEGIN SOLUTION
    keys = acts.reshape(-1, acts.shape[-1])
    return keys.T @ keys / keys.shape[0]
    ### END SOLUTION


# %% tags=["check"]
check.key_second_moment(key_second_moment)

# %% tags=["tests"] points=1
check.key_second_moment(key_second_moment, quiet=True).require()
### BEGIN HIDDEN TESTS
check.key_second_moment(key_second_moment, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"]
def rank_one_update(W: Tensor, C: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """ROME's change ΔW to an MLP's output weights so that the key k maps to v.

    W: [d_mlp, d_model]; C: [d_mlp, d_mlp]; k: [d_mlp]; v: [d_model]. Returns ΔW [d_mlp, d_model],
    of rank one, with k @ (W + ΔW) == v.
    """
    # Hint: torch.linalg.solve(C, k) is C⁻¹k without forming the inverse; torch.outer builds the rank-one matrix.
    ### BEGIN SOLUTION
    c_inv_k = torch.linalg.solve(C, k)
    return torch.outer(c_inv_k, v - k @ W) / (c_inv_k @ k)
    ### END SOLUTION


# %% tags=["check"]
check.rank_one_update(rank_one_update)

# %% tags=["tests"] points=2
check.rank_one_update(rank_one_update, quiet=True).require()
### BEGIN HIDDEN TESTS
check.rank_one_update(rank_one_update, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Now edit facts at the MLP that tracing located at the subject's last token (ROME's
# rule), and measure each edit on prompts it never saw:
#
# - **efficacy**: the edit's own sentence after prefixes it was not made with — does the
#   new answer win?
# - **generalization**: the fact in every other phrasing, the held-out one included, and
#   after openers the model never saw in training;
# - **specificity**: other countries' facts of the same relation — still right?
# - **same subject**: the same country's other relations, which should not move either.
#
# ROME's value is found by optimisation; the paper adds an **essence** term, the KL divergence
# on "<subject> is a" from the unedited model's prediction, so the edit changes the fact and not
# what the subject is. The table shows ROME without it and with it ("rome + KL").
#
# The comparison is fine-tuning the same weights, `W_out[layer]`, on the one sentence
# until the new answer's probability there passes 0.9. Each edit is undone before the
# next. Where tracing found the MLPs at the subject's last token to matter little, an
# edit there can still work, but only through what later layers read from that position.

# %%
from course.editing import key_second_moment as moment
from course.chapters.ch4_mlp_memories.findings import edit_comparison, same_subject_verdict

edit_layer = where["mlp_layer_at_subject"]
C = moment(acts[edit_layer]).to(model.device)
n_edits = 5
comparison = edit_comparison(model, edit_layer, C, n_edits=n_edits)
print(f"edits at the MLP of layer {edit_layer}, the subject's last token; means over {n_edits} edits")
print(f"{'':12s}" + "".join(f"{k:>16s}" for k in comparison["rome"]))
for method, scores in comparison.items():
    print(f"{method:12s}" + "".join(f"{v:16.2f}" for v in scores.values()))
print(same_subject_verdict(comparison))

# %% [markdown]
# Edit a fact yourself. Type a country and a new capital; the table shows the edited
# model's answers beside the original's, on paraphrases and on other countries. The
# model stays edited until you press **Undo**.

# %%
editor = FactEditor(model, C, layer=edit_layer)
editor

# %% [markdown]
# ## Summary
#
# - An MLP neuron is a key (what makes it fire, found from its top contexts) and a value
#   (a row of $W_{out}$, read through the unembedding as the tokens it promotes).
# - Keys and values agree more often than chance: a neuron tends to promote what follows
#   the contexts it fires on. Section 4 printed how this varies by layer in this model.
# - Neuron-level attribution says which neurons write a fact's answer (section 5 printed
#   how concentrated that is); causal tracing says where the fact is needed (section 6
#   printed where on this model, and how it compares with ROME's finding in GPT-2 XL).
# - A rank-one edit rewrites one fact; the closing note below quotes its efficacy,
#   generalization, specificity and what it does to the same subject's other facts, against
#   fine-tuning.

# %%
editor.undo()   # leave the model as it was trained
r, f = comparison["rome"], comparison["fine-tuning"]
print(f"Closing note: ROME at layer {edit_layer}: efficacy {r['efficacy']:.2f}, generalization "
      f"{r['generalization']:.2f}, specificity {r['specificity']:.2f}, same subject {r['same_subject']:.2f}; "
      f"fine-tuning the same weights: {f['efficacy']:.2f}, {f['generalization']:.2f}, {f['specificity']:.2f}, "
      f"{f['same_subject']:.2f}.")
