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
# # Capstone — Inside GPT-2
#
# One notebook of your own: open the course model on a prompt you choose with the tools you
# built in chapters 1 and 2, then make **one specific finding about the model that you
# discovered**, backed by an intervention, and write it up so that a reader could check it.
#
# **Part 1, your tools (autograded, 11 points).** Paste your chapter 1 and 2 functions into the
# cells below; each is checked at once, with that chapter's checks, and graded with its hidden
# tests.
#
# **Part 2, your prompt.** Choose a prompt, an answer and a counterfactual; your tools then give
# the forward pass, a logit lens table, a direct logit attribution bar chart and one head's QK
# and OV story on it, each compared with the toolkit at once.
#
# **Part 3, your finding (graded by hand, 12 points)**, by this rubric:
#
# | criterion | points | what earns them |
# | --- | --- | --- |
# | a clear claim | 2 | one sentence about this model that is true or false, naming the components and the behaviour |
# | evidence that could have failed | 3 | an intervention (ablation, patching, steering), not only a correlation, whose result could have gone the other way |
# | a control | 2 | the same intervention where the claim predicts no effect (other heads, random directions, other prompts) |
# | effect size with a baseline | 2 | how large the effect is, against the clean value and against the control |
# | what would have falsified it | 1 | the result that would have made you drop the claim, stated before you looked |
# | honest limits | 1 | what the evidence does not show (other prompts, other mechanisms, this small model) |
# | readable figures | 1 | at least one figure with a title, labelled axes and units, that shows the effect and the control |

# %% tags=["module"]
import math

import torch
import torch.nn.functional as F
from torch import Tensor

# %% tags=["setup"]
import matplotlib.pyplot as plt

import course
from course.chapters.capstone_inside_gpt2 import checks as check

torch.set_grad_enabled(False)
model = course.load_model()

# %% [markdown]
# ## Ideas to start from
#
# Not sure what to look at? Each of these was measured on the model just now, and the toolkit
# answers it in minutes. Any other question about the model is as welcome.

# %%
from course.chapters.capstone_inside_gpt2.findings import starting_ideas

for idea in starting_ideas(model):
    print(f"- {idea['question']}\n    because {idea['because']}\n    how: {idea['hint']}")

# %% [markdown]
# ## Part 1: your tools
#
# Paste each function from your chapter 1 and 2 notebooks into its cell (replace the whole
# cell), run it and its check.

# %% tags=["exercise"] reuse="ch1_residual_stream"
layer_norm

# %% tags=["check"]
check.layer_norm(layer_norm)

# %% tags=["tests"] points=1
check.layer_norm(layer_norm, quiet=True).require()
### BEGIN HIDDEN TESTS
check.layer_norm(layer_norm, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
attention_layer

# %% tags=["check"]
check.attention_layer(attention_layer)

# %% tags=["tests"] points=1
check.attention_layer(attention_layer, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_layer(attention_layer, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
mlp_layer

# %% tags=["check"]
check.mlp_layer(mlp_layer)

# %% tags=["tests"] points=1
check.mlp_layer(mlp_layer, quiet=True).require()
### BEGIN HIDDEN TESTS
check.mlp_layer(mlp_layer, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
forward_from_weights

# %% tags=["check"]
check.forward_from_weights(forward_from_weights)

# %% tags=["tests"] points=2
check.forward_from_weights(forward_from_weights, quiet=True).require()
### BEGIN HIDDEN TESTS
check.forward_from_weights(forward_from_weights, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
logit_lens

# %% tags=["check"]
check.logit_lens(logit_lens)

# %% tags=["tests"] points=1
check.logit_lens(logit_lens, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_lens(logit_lens, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
logit_diff_direction

# %% tags=["check"]
check.logit_diff_direction(logit_diff_direction)

# %% tags=["tests"] points=1
check.logit_diff_direction(logit_diff_direction, quiet=True).require()
### BEGIN HIDDEN TESTS
check.logit_diff_direction(logit_diff_direction, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch1_residual_stream"
component_attribution

# %% tags=["check"]
check.component_attribution(component_attribution)

# %% tags=["tests"] points=1
check.component_attribution(component_attribution, quiet=True).require()
### BEGIN HIDDEN TESTS
check.component_attribution(component_attribution, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch2_qk_ov_circuits"
attention_scores

# %% tags=["check"]
check.attention_scores(attention_scores)

# %% tags=["tests"] points=1
check.attention_scores(attention_scores, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_scores(attention_scores, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch2_qk_ov_circuits"
attention_pattern

# %% tags=["check"]
check.attention_pattern(attention_pattern)

# %% tags=["tests"] points=1
check.attention_pattern(attention_pattern, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_pattern(attention_pattern, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% tags=["exercise"] reuse="ch2_qk_ov_circuits"
ov_circuit

# %% tags=["check"]
check.ov_circuit(ov_circuit)

# %% tags=["tests"] points=1
check.ov_circuit(ov_circuit, quiet=True).require()
### BEGIN HIDDEN TESTS
check.ov_circuit(ov_circuit, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2: your prompt
#
# Choose a prompt whose next token the model should know, the answer you expect, and a
# counterfactual it could have said instead (each one token, most with a leading space). The
# IOI sentence below is only a start: a fact, a sum ("calc: 36 + 59 ="), a repeated sequence, a
# story of your own.

# %% tags=["work"]
PROMPT = "When Mary and John went to the store, John gave a drink to"
ANSWER, COUNTERFACTUAL = " Mary", " John"

# %%
chosen = check.use_prompt(model, PROMPT, ANSWER, COUNTERFACTUAL)
if chosen is not None:
    tokens, answer, counterfactual = chosen
    logits, cache = model.run_with_cache(tokens)

# %% [markdown]
# **The forward pass.** Your `forward_from_weights` on your prompt, against the model:

# %%
mine = check.yours(forward_from_weights, tokens, model)
if mine is not None:
    check.on_your_prompt("forward pass", mine, logits)

# %% [markdown]
# **The logit lens.** Your `logit_lens` decodes the stream at every depth; the table gives the
# top token and the answer's rank there.

# %%
lens = check.yours(logit_lens, cache, model)
if lens is not None:
    labels = cache.accumulated_resid(return_labels=True)[1]
    check.on_your_prompt("logit lens", lens, cache.apply_ln_final(cache.accumulated_resid(pos=-1)) @ model.W_U)
    for label, row in zip(labels, lens[:, 0]):
        rank = int((row > row[answer[0]]).sum()) + 1
        print(f"{label:>14s}  top {model.to_string(int(row.argmax()))!r:12s}  {ANSWER!r} ranks {rank}")

# %% [markdown]
# **Direct logit attribution.** Your `component_attribution`: what each write $x_i$ to the stream
# adds to $\mathrm{logit}(\text{answer}) - \mathrm{logit}(\text{counterfactual})$, that is
# $x_i / \sigma \cdot (W_U[:, \text{answer}] - W_U[:, \text{counterfactual}])$ with the final
# layer norm's scale $\sigma$ frozen.

# %%
dla = check.yours(component_attribution, cache, model, answer, counterfactual)
if dla is not None:
    parts, names = cache.decompose_resid(pos=-1, return_labels=True)
    reference = (cache.apply_ln_to_stack(parts, pos=-1) * (model.W_U[:, answer] - model.W_U[:, counterfactual]).T).sum(-1)
    check.on_your_prompt("direct logit attribution", dla, reference)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(range(len(names)), dla[:, 0].tolist())
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel(f"logit({ANSWER!r}) − logit({COUNTERFACTUAL!r})")
    ax.set_title("direct logit attribution on your prompt")
    plt.show()

# %% [markdown]
# The toolkit's explorer does the same for any prompt you type, head by head too: try
# variations of yours (another name, another order) and see which writes move.

# %%
from course.widgets import AttributionExplorer

AttributionExplorer(model, PROMPT, ANSWER, COUNTERFACTUAL)

# %% [markdown]
# **One head's QK and OV story.** The head below writes the most to the logit difference
# directly on your prompt (change `HEAD` to follow another). Its pattern from your
# `attention_pattern` says where it looks (QK); your `ov_circuit` says what attending to a
# token does to the logits (OV).

# %%
per_head = (cache.apply_ln_to_stack(cache.stack_head_results(pos=-1), pos=-1)
            * (model.W_U[:, answer] - model.W_U[:, counterfactual]).T).sum(-1)[:, 0]
HEAD = divmod(int(per_head.abs().argmax()), model.cfg.n_heads)
layer, head = HEAD
x = cache[f"blocks.{layer}.ln1.hook_normalized"] * model.ln1_w[layer] + model.ln1_b[layer]
pattern = check.yours(attention_pattern, x, model, layer)
circuit = check.yours(ov_circuit, model, layer, head, tokens[0])
if pattern is not None and circuit is not None:
    check.on_your_prompt("attention pattern", pattern, cache["pattern", layer])
    words = model.to_str_tokens(tokens)
    looked = int(pattern[0, head, -1].argmax())
    promoted = int(circuit[looked].argmax())
    print(f"L{layer}H{head} writes {float(per_head[layer * model.cfg.n_heads + head]):+.2f} of the logit difference "
          f"directly. From the last token it attends most to {words[looked]!r} "
          f"({float(pattern[0, head, -1, looked]):.2f}); attending to {words[looked]!r} raises, of your prompt's "
          f"tokens, the logit of {words[promoted]!r} most "
          f"({'copying' if promoted == looked or words[promoted] == words[looked] else 'not copying'}) and "
          f"{'raises' if circuit[looked, looked] > 0 else 'lowers'} its own logit ({float(circuit[looked, looked]):+.2f}).")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(pattern[0, head].tolist(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), words, rotation=90); ax.set_yticks(range(len(words)), words)
    ax.set_xlabel("key"); ax.set_ylabel("query"); ax.set_title(f"L{layer}H{head}'s attention on your prompt")
    plt.show()

# %% [markdown]
# ## Part 3: your finding
#
# Pick one question (above, or your own), and answer it with an intervention on the model. Put
# your code and figures in the cells below (add as many as you need), then fill in the seven
# answer cells: they are what is graded, by the rubric at the top. Numbers in your answers should
# be the ones your code printed.

# %% tags=["work"]
### BEGIN SOLUTION
from course.chapters.capstone_inside_gpt2.findings import head_ablation, head_ablation_report
from course.circuits.ioi import head_statistics, runs
from course.data.ioi_dataset import ioi_dataset

# The head that writes the most to the IOI logit difference directly, on *validation* prompts;
# the test then runs on held-out *test* families, so the choice does not see the test prompts.
stats = head_statistics(model, runs(model, ioi_dataset(model, "validation", n_groups=6, per_group=4, seed=5)))
chosen_head = divmod(int(stats["direct_effect"].abs().argmax()), model.cfg.n_heads)
found = head_ablation(model, chosen_head)
print(head_ablation_report(found))
### END SOLUTION

# %% tags=["work"]
### BEGIN SOLUTION
drops = [found["clean"] - c for c in found["controls"]]
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(["clean"], [0]); ax.bar([found["head"]], [found["clean"] - found["ablated"]], color="tab:red")
ax.bar([f"other L{chosen_head[0]} heads\n(mean, range)"], [sum(drops) / len(drops)], color="grey",
       yerr=[[sum(drops) / len(drops) - min(drops)], [max(drops) - sum(drops) / len(drops)]])
ax.set_ylabel("drop in logit difference (IO − S)")
ax.set_title(f"mean-ablating one head, {found['prompts']} held-out IOI prompts")
plt.show()
### END SOLUTION

# %% [markdown]
# **1. Your claim** (2 points): one sentence about this model, true or false.

# %% [markdown] tags=["answer"] points=2
# The head that writes the most to the IOI logit difference directly (chosen on validation prompts) is
# needed for IOI: mean-ablating it lowers the logit difference on held-out test prompts more than
# ablating any other head of its layer.

# %% [markdown]
# **2. Your evidence** (3 points): the intervention, and what it gave.

# %% [markdown] tags=["answer"] points=3
# I mean-ablated the head (its output replaced by its mean over the prompts, at every position) on
# held-out IOI prompts from the test families and measured the mean logit difference, logit(IO) −
# logit(S), before and after: the first cell of my work prints both and the drop. The head was
# chosen on validation prompts, so the test could have shown no drop.

# %% [markdown]
# **3. Your control** (2 points).

# %% [markdown] tags=["answer"] points=2
# The same ablation of every other head of the same layer, one at a time, on the same prompts:
# the printed range of their drops. If the head were merely in a busy layer, its drop would sit
# inside that range.

# %% [markdown]
# **4. The effect size, with its baseline** (2 points).

# %% [markdown] tags=["answer"] points=2
# The printed line gives the drop as a number and as a share of the clean logit difference, the
# controls' smallest and largest drops, and the margin over the strongest control with its standard
# error over prompts; the figure shows the head's drop against the controls' mean and range.

# %% [markdown]
# **5. What would have falsified it** (1 point), as you would have said before looking.

# %% [markdown] tags=["answer"] points=1
# A drop no larger than the strongest control's, or larger by less than twice the standard error
# of the prompt-by-prompt difference, would have meant the head is not singled out: large in the
# direct attribution, but replaceable or compensated for.

# %% [markdown]
# **6. The limits** (1 point): what the evidence does not show.

# %% [markdown] tags=["answer"] points=1
# Mean ablation removes what the head writes on *these* prompts; it does not say *how* the head
# does it (which position it reads, by what mechanism: chapter 3's path patching and the ABC test
# would), nor whether other sentence shapes or names behave the same. Other heads may compensate
# in part (backup), so the drop can understate the head's role. This is one small model trained
# on a synthetic curriculum, not GPT-2 small.

# %% [markdown]
# **7. Your figure** (1 point): which figure above shows the effect and its control, and how to
# read it.

# %% [markdown] tags=["answer"] points=1
# The bar chart under my work: the red bar is the head's drop in logit difference, the grey bar the
# other heads' mean drop with their range as the error bar; the y axis is in logits.
