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
# # Chapter 6 — Addition circuits
#
# How does a transformer add? Two models answer in two different ways. The course model
# learned two-digit sums written as "calc: 36 + 59 = 95", one digit per token, from text.
# A one-layer model trained only on $a + b \bmod 113$ learned an exact algorithm made of
# waves. Nikankin et al. (2024) found that language models add with a **bag of
# heuristics** — many neurons, each responding to a range or a digit pattern, whose sum
# is the answer; Anthropic's 2025 account of "36 + 59" found parallel pathways for the
# ones digit, the tens digit and the rough size of the sum. Nanda et al. (2023) took the
# modular model apart in the **Fourier basis** and followed its **grokking**. This chapter
# does both, measuring every claim on the model in front of you.
#
# Held-out sums: the course corpus left a seeded tenth of all (a, b) pairs out of
# training; half of those ("test") is what every measurement below runs on.

# %% tags=["module"]
import math

import torch
from torch import Tensor

# %% tags=["setup"]
import course
from course.arithmetic import (OPERAND_DIGITS, accuracy_by_case, addition_batch, answer_correct, digit_patching,
                               failures, fit_probe, operand_attention, probe_grid, residuals)
from course.chapters.ch6_addition import checks as check
from course.data.addition import AdditionPrompt, addition_split, held_out_addition_prompts
from course.widgets import AdditionExplorer, FourierViewer, GrokkingTimeline

torch.set_grad_enabled(False)
model = course.load_model()
test = addition_batch(model, held_out_addition_prompts("test"))
print(f"{model.cfg.n_layers} layers x {model.cfg.n_heads} heads; {len(test.prompts)} held-out sums, e.g. "
      f"{test.prompts[0].text + test.prompts[0].answer!r}: tokens {model.to_str_tokens(test.tokens[0])}")

# %% [markdown]
# ## Part A — how the course model adds
#
# ### 1. Accuracy by case
#
# Run whole lines (prompt and answer) and read the model's top prediction before each answer
# digit: this is **teacher forcing**, each digit predicted from the true digits before it.
# A sum is right when every one of its digits is. `answer_mask [batch, pos]` marks the answer
# digits; the prediction for the token at `pos` is read from the logits at `pos - 1`.

# %% tags=["exercise"]
def answer_right(logits: Tensor, tokens: Tensor, answer_mask: Tensor) -> Tensor:
    """Whether the top prediction (the argmax, whatever its probability) is right at every answer
    digit of each line.

    logits: [batch, pos, d_vocab]; tokens, answer_mask: [batch, pos]. Returns [batch] bool.
    """
    # Hint: logits[:, :-1].argmax(-1) predicts tokens[:, 1:]; positions outside the answer do not count.
    ### BEGIN SOLUTION
    right = logits[:, :-1].argmax(-1) == tokens[:, 1:]
    return (right | ~answer_mask[:, 1:]).all(-1)
    ### END SOLUTION


# %% tags=["check"]
check.answer_right(answer_right)

# %% tags=["tests"] points=1
check.answer_right(answer_right, quiet=True).require()
### BEGIN HIDDEN TESTS
check.answer_right(answer_right, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# By case: with and without a carry from the ones into the tens, two- and three-digit sums,
# and by answer digit. Then every held-out sum the model gets wrong, as it writes it.

# %%
import matplotlib.pyplot as plt

right = answer_correct(model, test)
table = accuracy_by_case(model, test, right)
print(f"{'case':12s}{'n':>6s}{'sum':>8s}{'ones':>8s}{'tens':>8s}")
for row in table:
    print(f"{row['case']:12s}{row['n']:6d}{row['accuracy']:8.3f}{row['ones digit']:8.3f}{row['tens digit']:8.3f}")
fig, ax = plt.subplots(figsize=(7, 2.8))
for i, key in enumerate(["accuracy", "ones digit", "tens digit"]):
    ax.bar([j + 0.27 * i for j in range(len(table))], [r[key] for r in table], width=0.27, label=key)
ax.set_xticks([j + 0.27 for j in range(len(table))], [r["case"] for r in table])
ax.set(ylim=(0, 1.05), ylabel="held-out accuracy")
ax.legend(fontsize=7)
plt.show()
wrong = failures(model, test, right)
print(f"{len(wrong)} wrong:", "; ".join(f"{line} (model: {said.strip()})" for line, said in wrong[:12]))

# %% [markdown]
# ### 2. Which heads move which digits?
#
# The answer digits are predicted at positions that do not hold the operands, so attention
# must bring the digits there. `cache["pattern", layer]` is `[batch, head, query, key]`;
# average, over the batch, the attention from each line's query position to the operand
# digits' positions.

# %% tags=["exercise"]
def attention_to(pattern: Tensor, query: Tensor, keys: list[int]) -> Tensor:
    """Mean attention from each line's ``query`` position to the ``keys`` positions, per head.

    pattern: [batch, head, q, k]; query: [batch] positions. Returns [head, len(keys)].
    """
    # Hint: pattern[torch.arange(batch), :, query] picks each line's query row: [batch, head, k].
    ### BEGIN SOLUTION
    rows = pattern[torch.arange(pattern.shape[0]), :, query]
    return rows[:, :, keys].mean(0)
    ### END SOLUTION


# %% tags=["check"]
check.attention_to(attention_to)

# %% tags=["tests"] points=1
check.attention_to(attention_to, quiet=True).require()
### BEGIN HIDDEN TESTS
check.attention_to(attention_to, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The toolkit's `operand_attention` does this at the positions predicting the ones and the
# tens digit, for every layer. Attention says where a head looks, not what it moves; so
# also **patch one operand digit**: give each sum a partner with one operand digit changed,
# and copy one head's output at the answer position from the partner's run into the clean
# run. The score is the share of the answer digit's change that head alone carries.

# %%
att = operand_attention(model, test)                         # [layer, head, (ones, tens), 4]
sample = test.prompts[:32]
patched = {(d, t): digit_patching(model, sample, d, t) for t in ("ones", "tens") for d in range(4)
           if not (t == "ones" and d in (0, 2))}               # a tens digit never changes the ones digit
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, (row, name) in zip(axes, [(0, "ones"), (1, "tens")]):
    flat = att[:, :, row].reshape(-1, 4)
    ax.imshow(flat.T, cmap="Blues", aspect="auto")
    ax.set(title=f"attention from the position predicting the {name} digit", xlabel="layer·head")
    ax.set_yticks(range(4), OPERAND_DIGITS)
plt.show()
for (d, t), scores in patched.items():
    l, h = divmod(int(scores.abs().argmax()), model.cfg.n_heads)
    print(f"{OPERAND_DIGITS[d]:8s} -> {t} digit: head L{l}H{h} carries {float(scores[l, h]):.2f} of the change; "
          f"it attends {float(att[l, h, 0 if t == 'ones' else 1, d]):.2f} to that digit")

# %% [markdown]
# ### 3. Who writes each answer digit?
#
# Chapter 1's direct logit attribution, per answer digit: at the position predicting the
# ones (or tens) digit, each head's and each MLP's write goes through the final layer norm
# (with the scale the model used there) onto the right digit's unembedding **minus the mean
# unembedding of the ten digits**. A write that raises every digit alike (the embedding says
# "a digit comes next", not which) gets no credit for choosing the answer. With the norm's
# bias the components sum to the right digit's logit minus the ten digits' mean logit.

# %%
from course.arithmetic import digit_attribution

fig, ax = plt.subplots(figsize=(11, 2.8))
for i, target in enumerate(("ones", "tens")):
    attr, names = digit_attribution(model, test, target, relative=True)   # [component, sum]
    ax.bar([j + 0.4 * i for j in range(len(names))], attr.mean(1), width=0.4, label=f"{target} digit")
    top = attr.mean(1).topk(3).indices.tolist()
    print(f"{target} digit: largest direct writers", ", ".join(f"{names[j]} ({float(attr[j].mean()):.1f})" for j in top),
          f"of a mean {float(attr.sum(0).mean()):.1f} for the right digit's logit above the ten digits' mean "
          f"(norm bias left out)")
ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
ax.set(ylabel="mean direct attribution\n(right digit − digits' mean)")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ### 4. The carry
#
# The tens digit depends on whether the ones digits carry. Is the carry written in the
# residual stream as a direction? Train a **linear probe** (logistic regression) on the
# stream at each layer and position to predict it, on sums from training, and measure it on
# the held-out sums. The toolkit's `fit_probe` trains one; `probe_grid` trains one per point.

# %%
train_pairs = sorted(addition_split()[0])[::12]
train = addition_batch(model, [AdditionPrompt(a, b) for a, b in train_pairs])
positions = [test.operand_pos[-1], test.operand_pos[-1] + 1, test.operand_pos[-1] + 2]
grid = probe_grid(model, train, test, positions)
from course.chapters.ch6_addition.findings import best_probe

probe = best_probe(grid, positions)
labels = {positions[0]: OPERAND_DIGITS[-1], positions[1]: "' ='", positions[2]: "' ' before the answer"}
for l in range(grid.shape[0]):
    print(f"stream entering {'block ' + str(l) if l < model.cfg.n_layers else 'the unembedding'}: "
          + "  ".join(f"{labels[p]}: {float(grid[l, i]):.2f}" for i, p in enumerate(positions)))
print(f"best held-out accuracy {probe['best']:.2f} (always guessing the commoner case: "
      f"{max(float(test.carry.float().mean()), 1 - float(test.carry.float().mean())):.2f}); within 0.05 of it first "
      f"in the stream entering layer {probe['layer']} at {labels[probe['position']]} (position {probe['position']})")

# %% [markdown]
# A probe shows the carry can be read; it does not show the model reads it there. If the
# probe's direction is how the model carries, setting the stream's component along it to its
# mean (over all sums) should break the carry cases and leave the others. Write the edit:
# `direction` need not be unit length.

# %% tags=["exercise"]
def set_component(x: Tensor, direction: Tensor, value: float) -> Tensor:
    """``x`` with its component along ``direction`` replaced by ``value``.

    x: [..., d]; direction: [d] (any length). Returns [..., d]: x + (value - x·u) u, u = direction / |direction|.
    """
    ### BEGIN SOLUTION
    u = direction / direction.norm()
    return x + (value - x @ u)[..., None] * u
    ### END SOLUTION


# %% tags=["check"]
check.set_component(set_component)

# %% tags=["tests"] points=1
check.set_component(set_component, quiet=True).require()
### BEGIN HIDDEN TESTS
check.set_component(set_component, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %%
from course.arithmetic import ablate_direction

layer, pos = probe["layer"], probe["position"]
xs = residuals(model, train, [pos])[layer, :, 0]
w, b = fit_probe(xs, train.carry.float())
after = ablate_direction(model, test, w, layer, pos)     # the toolkit's version of the edit you wrote
before_ok, after_ok = (right | ~test.answer_mask).all(1), (after | ~test.answer_mask).all(1)
carry_drop = float(before_ok[test.carry].float().mean() - after_ok[test.carry].float().mean())
plain_drop = float(before_ok[~test.carry].float().mean() - after_ok[~test.carry].float().mean())
print(f"flattening the carry direction at layer {layer}, from position {pos} on: accuracy falls by {carry_drop:.2f} "
      f"on carry sums and {plain_drop:.2f} on the others")
selective = carry_drop >= 0.1 and carry_drop > 2 * max(plain_drop, 0.0)
print("so the probe's direction " + ("is how the model carries: flattening it breaks the carry sums and spares the others"
      if selective else "is readable but not what the model relies on: a probe finds information, not its use "
      "(the carry may be spread over several directions, or read from the operand digits again later)"))

# %% [markdown]
# A probe is fitted to *separate* the two cases, and "the mean over all sums" sits between
# them: a model that reads the carry as on or off may read the mean either way. Switch the
# carry **off** instead: find the direction in which carry sums differ from the others, and
# set every line's component along it to the value of the sums *without* a carry. If the
# model carries through that direction, the carry sums should come out one ten short and the
# others stay right; switching it **on** (the carry sums' value) should break the others.
# The direction is the difference of the two classes' mean streams.

# %% tags=["exercise"]
def carry_direction(x: Tensor, carry: Tensor) -> Tensor:
    """The mean of ``x`` over the carry sums minus its mean over the others.

    x: [n, d] streams; carry: [n] bool. Returns [d], pointing from "no carry" to "carry".
    """
    ### BEGIN SOLUTION
    return x[carry].mean(0) - x[~carry].mean(0)
    ### END SOLUTION


# %% tags=["check"]
check.carry_direction(carry_direction)

# %% tags=["tests"] points=1
check.carry_direction(carry_direction, quiet=True).require()
### BEGIN HIDDEN TESTS
check.carry_direction(carry_direction, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Where to switch? The position predicting the tens digit is not the same token in every
# line: in a two-digit answer it is the space before the answer, in a three-digit one it
# is the hundreds digit, one position later. They are different streams, so the toolkit
# treats each answer length on its own: it fits the direction on the training sums of that
# length, tries it between each layer's attention and its MLP, and keeps the layer where
# switching off is most selective on the validation sums of that length (carry sums lost
# minus others lost). It reports on the test sums, each length switched at its own layer,
# only at that one position. Two controls, random directions: set to their own no-carry value
# (the same rule), and pushed as far as the carry edit pushes (the same push). "Exactly the
# carry cases" here means: at least half of the carry sums lost, at most 0.05 of the others.

# %%
from course.arithmetic.probe import stream_name
from course.chapters.ch6_addition.findings import carry_switch

validation = addition_batch(model, held_out_addition_prompts("validation"))
switch = carry_switch(model, train, validation, test, n_controls=3)   # the toolkit's carry_direction inside
for g in switch["groups"]:
    print(f"{g['digits']}-digit answers: selectivity by layer (validation) "
          f"{[round(x, 2) for x in g['selectivity_by_layer']]} -> layer {g['layer']}; on its {g['lines']} test sums "
          f"carry {g['clean'][0]:.2f} -> {g['off'][0]:.2f} switched off, others {g['clean'][1]:.2f} -> "
          f"{g['off'][1]:.2f} (switched on: {g['on'][1]:.2f})")
print(f"\n{'accuracy on all test sums':34s}{'carry':>7s}{'no carry':>10s}")
for label, key in [("clean", "clean"), ("carry switched off", "off"), ("carry switched on", "on"),
                   ("control: random, same rule", "control_rule"), ("control: random, same push", "control_push")]:
    print(f"{label:34s}{switch[key][0]:7.2f}{switch[key][1]:10.2f}")
print(("so these directions are how the model carries: switching them off breaks exactly the carry sums"
       if switch["exact"] and switch["controls_not_selective"] else
       "so no direction here breaks exactly the carry sums (criterion: carry sums lose >= 0.5, the others "
       "<= 0.05, controls not selective)") + ", at layers " + ", ".join(
    f"{g['layer']} ({g['digits']}-digit answers)" for g in switch["groups"]) + ", between attention and MLP.")
print(f"Of the carry sums switching off breaks, {switch['off_one_ten_short']:.2f} write the answer one ten short "
      "(95 -> 85), e.g. " + "; ".join(f"{a} + {b} = {a + b}: {w} for the {str(a + b)[-2]}"
                                      for a, b, w in switch["off_examples"])
      + f". Of the others switching on breaks, {switch['on_one_ten_over']:.2f} write it one ten over (32 -> 42, "
      "95 -> 105), e.g. " + "; ".join(f"{a} + {b} = {a + b}: {w} for the {str(a + b)[-2]}"
                                      for a, b, w in switch["on_examples"]) + ".")

# %% [markdown]
# Which component writes that direction? The stream there is a sum of writes (the embeddings,
# every head up to that layer, the MLPs below it), so the gap between the carry sums' and the
# others' component along the direction splits exactly into each writer's share (an attribution,
# read from the clean run; the switch above is the intervention):

# %%
from course.chapters.ch6_addition.findings import carry_writers, carry_writers_line

for g in switch["groups"]:
    print(carry_writers_line(carry_writers(model, test, g)))

# %% [markdown]
# ### The rough size of the sum
#
# Anthropic's account of "36 + 59" found, next to the digit pathways, one that knows the
# answer only roughly ("about 90"). Does the course model have it? At the position
# predicting the tens digit, fit a linear readout of the sum $a + b$ from the stream at each
# depth and measure its mean error on the held-out sums; as for the carry, each answer length
# on its own, since that position is a different token in each. Two yardsticks: guessing the
# mean sum, and the best guess from the tens digits alone, $10(a_1 + b_1) + 9$ — the rough
# size without the ones digits.

# %%
from course.chapters.ch6_addition.findings import rough_size_verdict, sum_readout

before_carry = {}                                             # answer length -> readout error entering its carry layer
for g in switch["groups"]:
    of_length = lambda batch: batch.select(batch.answer_mask.sum(1) == g["digits"])
    readout = sum_readout(model, of_length(train), of_length(test))
    print(f"{g['digits']}-digit answers: " + "  ".join(f"{row['hook'].removeprefix('blocks.')} {row['mae']:.1f}"
                                                   for row in readout["rows"]))
    before = next(r for r in readout["rows"] if r["hook"] == stream_name(model, g["layer"]))
    before_carry[g["digits"]] = before["mae"]
    print("   " + rough_size_verdict(before["mae"], readout, g["layer"]))

# %% [markdown]
# ### 5. Neurons as a bag of heuristics
#
# Take the neurons of the last layer at the position predicting the ones digit, over a third
# of all two-digit pairs (those with $b \equiv a \pmod 3$: 2,700 pairs, every pair of ones
# digits among them; activations, not accuracy, so training pairs count too). A neuron is a **heuristic** if one
# simple pattern of the operands or the result explains its activation: the range of $a$
# or of the sum, the sum's ones digit, a carry, ... Measure that by the share of a neuron's
# variance explained by the mean over each group of a pattern ($\eta^2$).

# %% tags=["exercise"]
def explained_variance(acts: Tensor, groups: Tensor) -> Tensor:
    """η² per neuron: 1 - (variance around each group's mean) / (variance around the overall mean).

    acts: [n, d_mlp]; groups: [n] integer labels. Returns [d_mlp] (0 where a neuron is constant).
    """
    # Hint: torch.unique(groups, return_inverse=True) numbers the groups 0..k-1; index_add_ sums by group.
    ### BEGIN SOLUTION
    ids = torch.unique(groups, return_inverse=True)[1]
    k = int(ids.max()) + 1
    count = torch.zeros(k).index_add_(0, ids, torch.ones(len(ids)))
    means = torch.zeros(k, acts.shape[1]).index_add_(0, ids, acts) / count[:, None]
    total = (acts - acts.mean(0)).pow(2).sum(0)
    within = (acts - means[ids]).pow(2).sum(0)
    return torch.where(total > 0, 1 - within / total.clamp_min(1e-12), torch.zeros_like(total))
    ### END SOLUTION


# %% tags=["check"]
check.explained_variance(explained_variance)

# %% tags=["tests"] points=2
check.explained_variance(explained_variance, quiet=True).require()
### BEGIN HIDDEN TESTS
check.explained_variance(explained_variance, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The toolkit classifies the most important neurons (largest spread of direct effect on the
# digit logits) with the coarsest pattern that explains nearly as much as the best one, then
# ablates each class (mean activation) and looks at which held-out sums break.

# %%
from course.chapters.ch6_addition.findings import ablation_verdicts, class_ablations, heuristic_classes

every = addition_batch(model, [AdditionPrompt(a, b) for a in range(10, 100) for b in range(10, 100)
                              if (a - b) % 3 == 0])
classes = heuristic_classes(model, every, model.cfg.n_layers - 1, k=40)
for pattern, n in classes["counts"].most_common():
    print(f"{n:3d} neurons: {pattern}")
ablations = class_ablations(model, test, classes, right)
print(f"\n{'ablated class':32s}{'n':>4s}{'all':>7s}{'carry':>7s}{'no carry':>9s}   most broken ones digit")
for r in ablations:
    print(f"{r['class']:32s}{r['neurons']:4d}{r['accuracy']:7.2f}{r['carry']:7.2f}{r['no carry']:9.2f}   "
          f"{r['most broken ones digit']}")
print()
for line in ablation_verdicts(ablations):
    print(line)

# %% [markdown]
# Explore a sum: the answer, the attention from the position predicting its ones digit to
# the operand digits, and the classified neurons firing most there.

# %%
AdditionExplorer(model, 36, 59, classes={(classes["layer"], n): c for n, c, _ in classes["neurons"]})

# %% [markdown]
# ## Part B — the modular-addition algorithm (p = 113)
#
# A one-layer model reads `[a, b, =]` and answers $(a + b) \bmod 113$ at `=`. Nanda et al.
# found it computes with waves: it embeds $a$ as $\cos(wa), \sin(wa)$ for a few
# **key frequencies** $w = 2\pi k / p$, multiplies them into $\cos(w(a + b))$, and its
# logit for $c$ is a sum of $\cos(w(a + b - c))$, largest at $c = a + b$. The Fourier
# basis makes this visible. Build it: the constant, then $\cos(wx), \sin(wx)$ for
# $k = 1 \ldots (p-1)/2$, each row of unit length.

# %% tags=["exercise"]
def fourier_basis(p: int) -> Tensor:
    """Orthonormal Fourier basis over 0..p-1 (p odd).

    Returns [p, p]: row 0 constant, rows 2k-1 and 2k are cos(2πkx/p) and sin(2πkx/p), k = 1..(p-1)/2, each of norm 1.
    """
    ### BEGIN SOLUTION
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).float()
    ### END SOLUTION


# %% tags=["check"]
check.fourier_basis(fourier_basis)

# %% tags=["tests"] points=1
check.fourier_basis(fourier_basis, quiet=True).require()
### BEGIN HIDDEN TESTS
check.fourier_basis(fourier_basis, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %%
from course.fourier import all_logits, frequency_norms, key_frequencies, loss_on, sum_wave_share
from course.models.modular import P, split

modular = course.load_model("modular-addition", device="cpu")
norms = frequency_norms(modular.W_E[:P].cpu())
logits = all_logits(modular)
freqs = key_frequencies(modular)
share = sum_wave_share(logits)
fig, ax = plt.subplots(1, 2, figsize=(11, 2.8))
ax[0].bar(range(1, P // 2 + 1), norms)
ax[0].set(title="embedding: norm per frequency", xlabel="k")
ax[1].bar(range(1, P // 2 + 1), share)
ax[1].set(title="logits: variance along cos/sin(w(a + b))", xlabel="k")
plt.show()
from course.fourier import fourier_basis as toolkit_basis
from course.models.modular import all_pairs

basis = toolkit_basis(P)[0]
_, mod_cache = modular.run_with_cache(all_pairs(), names_filter=["blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_post"])
key_rows = [0] + [2 * k - 1 for k in freqs] + [2 * k for k in freqs]
for h in range(modular.cfg.n_heads):
    grid2d = basis @ mod_cache["pattern", 0][:, h, -1, 0].cpu().reshape(P, P) @ basis.T   # attention "=" -> a
    energy = grid2d.pow(2)
    energy[0, 0] = 0                                                                 # leave out the mean
    print(f"head {h}: {float(energy[key_rows][:, key_rows].sum() / energy.sum()):.2f} of its attention's variance over "
          f"(a, b) lies in the key frequencies (and the constant); spread evenly, "
          f"{(len(key_rows) ** 2 - 1) / (P ** 2 - 1):.2f} would")
neurons2d = torch.einsum("ia,abn,jb->ijn", basis, mod_cache["post", 0][:, -1].cpu().reshape(P, P, -1), basis)
energy = neurons2d.pow(2)
energy[0, 0] = 0                                                                     # each neuron's mean left out
print(f"MLP neurons at '=': {float(energy[key_rows][:, key_rows].sum() / energy.sum()):.2f} of their activations' "
      f"variance over (a, b) lies in the key frequencies (and the constant), terms such as cos(wa)·cos(wb); "
      f"spread evenly, {(len(key_rows) ** 2 - 1) / (P ** 2 - 1):.2f} would")
print(f"key frequencies (each carries >= 2% of the logits' variance): {freqs}, together "
      f"{float(share[[k - 1 for k in freqs]].sum()):.2f} of it; the embedding's largest norms are at "
      f"{(norms.topk(len(freqs)).indices + 1).sort().values.tolist()}")

# %% [markdown]
# ### Logits as sums of waves, and restricted and excluded loss
#
# For each answer $c$, the part of the logits along $\cos(w(a+b))$ and $\sin(w(a+b))$ over
# the $(a, b)$ grid is a wave $\cos(w(a + b - c))$ times an amplitude. Project the logits
# onto those two directions for each key frequency (the directions of different
# frequencies are orthogonal, so the projections add). Keeping only that part (plus each
# answer's mean) is the **restricted** logits; removing it is the **excluded** logits.

# %% tags=["exercise"]
def project_sum_waves(logits: Tensor, freqs: list[int]) -> Tensor:
    """The part of ``logits`` along cos(w(a+b)) and sin(w(a+b)), w = 2πk/p, for each k in freqs.

    logits: [p, p, n_out] over (a, b). Returns [p, p, n_out]: for each output, the projection of
    its [p, p] grid onto the span of those 2·len(freqs) grids.
    """
    # Hint: normalize each wave grid to unit norm; projection = sum over waves of <wave, grid> * wave.
    ### BEGIN SOLUTION
    p = logits.shape[0]
    a = torch.arange(p, dtype=torch.float64)
    s = a[:, None] + a[None, :]
    out = torch.zeros_like(logits)
    for k in freqs:
        for wave in (torch.cos(2 * math.pi * k * s / p), torch.sin(2 * math.pi * k * s / p)):
            wave = (wave / wave.norm()).float()
            out += wave[:, :, None] * torch.einsum("ab,abc->c", wave, logits)
    return out
    ### END SOLUTION


# %% tags=["check"]
check.project_sum_waves(project_sum_waves)

# %% tags=["tests"] points=2
check.project_sum_waves(project_sum_waves, quiet=True).require()
### BEGIN HIDDEN TESTS
check.project_sum_waves(project_sum_waves, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %%
train_idx, test_idx = split()
from course.fourier import excluded_logits, restricted_logits

restricted = restricted_logits(logits, freqs)   # the toolkit's: each answer's mean + the projection you wrote
excluded = excluded_logits(logits, freqs)
print(f"loss on the training pairs: model {loss_on(logits, train_idx):.3f}, key frequencies only "
      f"{loss_on(restricted, train_idx):.3f}, key frequencies removed {loss_on(excluded, train_idx):.3f} "
      f"(uniform guessing: {math.log(P):.2f}); test loss {loss_on(logits, test_idx):.3f}")

# %% [markdown]
# Pick a frequency and a head: the embedding's norm per frequency; the head's attention from
# `=` to $a$ over $(a, b)$ and the sizes of its 2-D Fourier coefficients (the constant term
# left out, so the waves set the colour scale; the shares printed above say how much of each
# head's variance sits at the key frequencies); the neuron most concentrated at the
# frequency, over $(a, b)$ and in the Fourier basis; and the logit of $c = 0$ with its part at
# that frequency, on the same colour scale, a wave along the anti-diagonals $a + b$ = const.

# %%
FourierViewer(modular, freqs[0], freqs=list(range(1, P // 2 + 1)))

# %% [markdown]
# ### Grokking
#
# The model trained on 40% of the pairs with strong weight decay. Its training shipped
# checkpoints and the loss every few steps. Over the checkpoints: train and test loss, the
# restricted and excluded loss (on training pairs, with today's key frequencies), and the
# sum of squared weights. **Memorization**: the train loss falls, the test loss does not.
# **Circuit formation**: the restricted loss (key frequencies only) falls while the excluded
# loss stays high — the model comes to compute with the key frequencies. **Cleanup**: the
# test loss falls the rest of the way; Nanda et al. saw the weight norm fall here as weight
# decay removed the memorized solution, over many steps after the test loss dropped (the
# printout says whether this run goes on long enough to show it). The fine loss curve is logged every few steps; the progress measures exist only at
# the checkpoints.

# %%
from course.chapters.ch6_addition.findings import grokking_phases, grokking_report
from course.fourier import progress_measures
from course.models.modular import loss_curve

measures = progress_measures(freqs)
phases = grokking_phases(loss_curve(), measures)
for m in measures:
    print(f"step {m['step']:4d}: train {m['train_loss']:.3f}  test {m['test_loss']:.3f}  restricted "
          f"{m['restricted_loss']:.3f}  excluded {m['excluded_loss']:.3f}  weights {m['weight_norm']:.0f}")
print(grokking_report(phases))
GrokkingTimeline(measures)

# %% [markdown]
# ## Summary
#
# - The course model's accuracy by case, the heads that move each operand digit (by
#   attention and by patching one digit), a linearly readable carry and what flattening it
#   does, the directions (one per answer length) whose switch turns the carry off (or on), how roughly the stream knows
#   the sum before the carry arrives, and the heuristic classes of its last layer's neurons
#   were all printed above.
# - The modular model computes with its key frequencies (section printed which, and how much
#   of the logits' variance they carry): the printout compares its loss with only them kept and
#   with them removed. Its training shows the phases printed above, and says whether the
#   clean-up's fall of the weight norm is there.

# %%
print(f"Closing note: carry switched off at layers {[g['layer'] for g in switch['groups']]} (by answer length): "
      f"carry sums {switch['clean'][0]:.2f} -> {switch['off'][0]:.2f}, others {switch['clean'][1]:.2f} -> "
      f"{switch['off'][1]:.2f}; sum readable before the carry to " + ", ".join(
          f"{mae:.1f} ({digits}-digit answers)" for digits, mae in before_carry.items()) + ".")
print(f"Closing note: carry probe {probe['best']:.2f} held out at best (best by layer "
      f"{[round(x, 2) for x in probe['by_layer']]}); heuristic classes {dict(classes['counts'])}; "
      f"key frequencies {freqs}; grokking phases end at steps {phases['memorized']}, {phases['circuit_formed']}, "
      f"{phases['grokked']}.")
