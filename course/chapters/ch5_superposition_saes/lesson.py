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
# # Chapter 5 — Superposition and sparse autoencoders
#
# A model with $d$ dimensions can give $d$ features a direction each. Elhage et al. (2022)
# showed with **toy models** that when features are *sparse* (rarely present), a network
# stores **more features than dimensions**, in almost-orthogonal directions, and pays for it
# with a little **interference**. That is **superposition**, and it is why single neurons
# are hard to read. A **sparse autoencoder** (SAE) undoes it: it learns an overcomplete
# dictionary of directions such that every activation is a sparse sum of a few of them
# (Anthropic's *Towards Monosemanticity*, 2023; Gao et al. 2024 for the TopK variant).
#
# Part A trains toy models (many at once, one per sparsity level) and watches superposition
# appear. Part B trains an SAE on the course model's residual stream, measures it (L0,
# explained variance, dead features, loss recovered), reads its features, names a few of
# them by code, and steers the model with one. Every statement about the model is computed
# in front of you.

# %% tags=["module"]
import torch
from torch import Tensor

# %% tags=["setup"]
import matplotlib.pyplot as plt

import course
from course.chapters.ch5_superposition_saes import checks as check
from course.saes import (SparseDictionary, evaluate, load_shipped_sae, read_sites, save_sae)
from course.superposition import feature_batch, interference, plot_features_2d
from course.widgets import FeatureDashboard, SuperpositionExplorer

torch.set_grad_enabled(False)
torch.manual_seed(0)
model = course.load_model()
print(f"course model: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}")

# %% [markdown]
# ## Part A — toy models of superposition
#
# ### 1. The toy model
#
# $n$ features $x \in [0, 1]^n$ are compressed into $d < n$ hidden dimensions by $W$
# (`[d_hidden, n_features]`) and read back with the same matrix: $x' = \text{ReLU}(W^\top W x + b)$.
# To train many models at once, every tensor has an **instance** dimension:
# `W [instance, d_hidden, feature]`, `b [instance, feature]`, `x [batch, instance, feature]`.

# %% tags=["exercise"]
def toy_forward(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """ReLU(Wᵀ W x + b) for every instance.

    W: [instance, d_hidden, feature]; b: [instance, feature]; x: [batch, instance, feature].
    Returns [batch, instance, feature].
    """
    # Hint: torch.einsum("bif,ihf->bih", x, W) compresses; a second einsum reads back.
    ### BEGIN SOLUTION
    hidden = torch.einsum("bif,ihf->bih", x, W)
    return torch.relu(torch.einsum("bih,ihf->bif", hidden, W) + b)
    ### END SOLUTION


# %% tags=["check"]
check.toy_forward(toy_forward)

# %% tags=["tests"] points=1
check.toy_forward(toy_forward, quiet=True).require()
### BEGIN HIDDEN TESTS
check.toy_forward(toy_forward, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Features differ in **importance** (how much an error on them costs) and in **sparsity**
# (feature probability $p$: each is present with probability $p$, then uniform in $[0, 1]$).
# The loss weighs each feature's squared error by its importance $I_i$:
# $L = \mathbb{E}_x \sum_i I_i (x_i - x'_i)^2$, one number per instance.

# %% tags=["exercise"]
def importance_weighted_loss(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    """Per instance: importance-weighted squared error, mean over the batch, summed over features.

    out, x: [batch, instance, feature]; importance: [instance, feature]. Returns [instance].
    """
    ### BEGIN SOLUTION
    return (importance * (out - x).pow(2)).mean(0).sum(-1)
    ### END SOLUTION


# %% tags=["check"]
check.importance_weighted_loss(importance_weighted_loss)

# %% tags=["tests"] points=1
check.importance_weighted_loss(importance_weighted_loss, quiet=True).require()
### BEGIN HIDDEN TESTS
check.importance_weighted_loss(importance_weighted_loss, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### 2. From dedicated dimensions to superposition
#
# Five features, two dimensions, importance $0.8^i$, and one instance per feature probability
# from 1 (dense) to 0.01 (very sparse), trained together (`course.superposition.train_toy`,
# the same model and loss as yours). Each panel draws the five columns of one instance's $W$.

# %%
from course.chapters.ch5_superposition_saes.findings import sparsity_sweep, superposition_grows_with_sparsity

probabilities = (1.0, 0.3, 0.1, 0.03, 0.01)
toy, importance, geoms = sparsity_sweep(probabilities=probabilities)
plot_features_2d(toy.W, [f"p = {p}" for p in probabilities], importance)
plt.show()
for p, g in zip(probabilities, geoms):
    print(f"p = {p:<5}: {g.n_represented} of 5 features represented, {g.n_superposed} sharing a dimension; "
          f"norms {[round(float(v), 2) for v in g.norms]}")
print("sparser features -> more features than dimensions:", superposition_grows_with_sparsity(geoms))

# %% [markdown]
# $W^\top W$ shows the interference directly: the diagonal is each feature's norm², an
# off-diagonal entry how much feature $j$ leaks into feature $i$'s read-out (negative
# entries are antipodal pairs, which the ReLU and bias clean up).

# %%
fig, axes = plt.subplots(1, len(probabilities), figsize=(10, 2))
for ax, p, m in zip(axes, probabilities, interference(toy.W)):
    ax.imshow(m, cmap="RdBu", vmin=-1, vmax=1), ax.set_title(f"p = {p}", fontsize=8), ax.axis("off")
plt.show()

# %% [markdown]
# Explore it yourself: the explorer retrains five features in two dimensions for the
# sparsity and importance decay you choose and redraws the geometry (the legend gives each
# feature's importance). Training is gradient descent from one random start, so it can stop in
# a **local minimum**: a less important feature kept while a more important one is dropped. The
# status line says so when it happens; the best arrangement would have them the other way round.

# %%
SuperpositionExplorer()

# %% [markdown]
# ### 3. Feature dimensionality
#
# How much of a dimension does a feature get? Elhage et al.'s **dimensionality**
# $D_i = \|W_i\|^2 / \sum_j (\hat W_i \cdot W_j)^2$ is 1 for a feature with a dimension of
# its own, 1/2 for each of an antipodal pair, 2/5 for a pentagon, and 0 for a dropped feature.

# %% tags=["exercise"]
def feature_dimensionality(W: Tensor) -> Tensor:
    """D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)² for every feature of every instance.

    W: [instance, d_hidden, feature]. Returns [instance, feature]. A dropped feature (a column of
    zeros) has D_i = 0, not NaN: keep the norm you divide by away from 0.
    """
    # Hint: the columns W[:, :, i] are the features; normalise them, then einsum for all dot products.
    ### BEGIN SOLUTION
    norms = W.norm(dim=1)
    unit = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W)
    return norms.pow(2) / overlaps.pow(2).sum(-1).clamp_min(1e-12)
    ### END SOLUTION


# %% tags=["check"]
check.feature_dimensionality(feature_dimensionality)

# %% tags=["tests"] points=1
check.feature_dimensionality(feature_dimensionality, quiet=True).require()
### BEGIN HIDDEN TESTS
check.feature_dimensionality(feature_dimensionality, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Forty features in ten dimensions at eight sparsity levels: as features get sparser, the
# number of features represented per hidden dimension rises (at most 40 / 10 = 4). Counting
# them as $\|W\|_F^2 / d$ assumes each represented feature has norm 1; a trained feature's
# norm can exceed 1, so the cell counts features with norm above 0.5 instead and prints
# both. Elhage et al. found the single features' $D_i$ clustering at a few "sticky" fractions
# (1, 1/2, 2/5, 1/3...); the cell measures how many of this run's represented features sit
# near one.

# %%
from course.superposition import ToyModel, train_toy
from course.superposition import feature_dimensionality as toolkit_dimensionality

# Yours once it passes its check; until then the toolkit's, so the notebook runs on.
dimensionality = feature_dimensionality if check.feature_dimensionality(feature_dimensionality, quiet=True) \
    else toolkit_dimensionality
n_feat, d_hid = 40, 10
ps = torch.logspace(0, -2, 8)
big = ToyModel(len(ps), n_feat, d_hid, seed=1)
train_toy(big, ps[:, None].expand(-1, n_feat).contiguous(), torch.ones(len(ps), n_feat), steps=1500, seed=1)
dims = dimensionality(big.W)
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
norms = big.W.detach().norm(dim=1)                                  # [instance, feature]
per_dim = (norms > 0.5).sum(-1) / d_hid                             # represented features per dimension
frobenius = big.W.detach().pow(2).sum((1, 2)) / d_hid
axes[0].plot(1 / ps, per_dim, "o-"), axes[0].set_xscale("log")
axes[0].set_xlabel("1 / feature probability"), axes[0].set_ylabel("features per dimension")
for i, p in enumerate(ps):
    axes[1].scatter(torch.full((n_feat,), float(1 / p)), dims[i], s=6, alpha=0.5)
axes[1].set_xscale("log"), axes[1].set_xlabel("1 / feature probability"), axes[1].set_ylabel("$D_i$")
plt.show()
print("represented features per dimension, dense -> sparse:", [round(float(v), 2) for v in per_dim],
      f"(at most {n_feat / d_hid:g})")
print("||W||² / d, the same runs:", [round(float(v), 2) for v in frobenius],
      f"(represented features' mean norm {float(norms[norms > 0.5].mean()):.2f}, so this overcounts)")
sticky = torch.tensor([1, 1 / 2, 2 / 5, 1 / 3, 1 / 4])
represented = dims.detach()[norms > 0.5]
near = ((represented[:, None] - sticky).abs() < 0.05).any(-1).float().mean()
share_of_line = float(((torch.rand(10_000, generator=torch.Generator().manual_seed(0))[:, None] - sticky).abs()
                       < 0.05).any(-1).float().mean())
print(f"{float(near):.0%} of the represented features have a D_i within 0.05 of 1, 1/2, 2/5, 1/3 or 1/4 "
      f"(values spread evenly over [0, 1] would land there {share_of_line:.0%} of the time)")

# %% [markdown]
# **Correlated and anticorrelated features.** Superposition relies on features rarely being
# present together. Features that always come together interfere whenever they come, so the
# model cannot superpose them cheaply; with no room for both it represents their sum along
# one direction (PCA-like). Features that never come together interfere never, so they can
# share a line, pointing opposite ways (antipodal). Four features (probability 0.25) in two
# dimensions, as two correlated or two anticorrelated pairs; the printed cosines measure it:

# %%
from course.chapters.ch5_superposition_saes.findings import correlated_geometry

pairs = correlated_geometry()
plot_features_2d(torch.cat([pairs["correlated"]["W"], pairs["anticorrelated"]["W"]]),
                 ["correlated pairs (0,1), (2,3)", "anticorrelated pairs"])
plt.show()
for name, r in pairs.items():
    print(f"{name}: cosine within the pairs {[round(c, 2) for c in r['cosines']]}, feature norms "
          f"{[round(n, 2) for n in r['norms']]}")

# %% [markdown]
# ## Part B — sparse autoencoders on the course model
#
# ### 4. The SAE
#
# An SAE encodes an activation $x \in \mathbb{R}^{d}$ into $d_{sae} \gg d$ feature activations
# $f = \sigma(x W_{enc} + b_{enc})$ and decodes $\hat x = f W_{dec} + b_{dec}$. Encoder and
# decoder are **untied**, and the decoder's rows (the feature directions) have unit norm, so
# a feature cannot look sparse by shrinking its activation and growing its direction.
# $\sigma$ is either a ReLU (with an L1 penalty on $f$ pushing most of it to zero) or
# **TopK**: keep the $k$ largest pre-activations (ReLU'd), zero the rest (Gao et al. 2024),
# which fixes the sparsity directly.
#
# The toolkit's `course.saes.SparseDictionary` has `W_enc [d_in, d_sae]`, `b_enc`,
# `W_dec [d_sae, d_out]`, `b_dec` and `sae.cfg.activation` ("relu" or "topk"), `sae.cfg.k`.
# (`d_out` may differ from `d_in`: chapter 7's transcoders read one site and predict another
# with the same class.)

# %% tags=["exercise"]
def sae_encode(sae, x: Tensor) -> Tensor:
    """Feature activations of ``x [..., d_in]``: ReLU, or TopK (then ReLU) if sae.cfg.activation == "topk",
    of the pre-activation ``x @ W_enc + b_enc`` (this course does not subtract b_dec from x first;
    that shift is folded into b_enc).

    Returns [..., d_sae], zero except the active features.
    """
    # Hint: pre.topk(k, dim=-1) gives values and indices; torch.zeros_like(pre).scatter(-1, indices, values).
    ### BEGIN SOLUTION
    pre = x @ sae.W_enc + sae.b_enc
    if sae.cfg.activation == "relu":
        return pre.relu()
    values, indices = pre.topk(sae.cfg.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())
    ### END SOLUTION


# %% tags=["check"]
check.sae_encode(sae_encode)

# %% tags=["tests"] points=1
check.sae_encode(sae_encode, quiet=True).require()
### BEGIN HIDDEN TESTS
check.sae_encode(sae_encode, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The loss: squared reconstruction error (summed over the $d$ dimensions, averaged over
# tokens) plus, for a ReLU SAE, `l1_coeff` times the L1 norm of $f$ (summed over features,
# averaged over tokens). TopK needs no penalty.

# %% tags=["exercise"]
def sae_loss(sae, x: Tensor, l1_coeff: float) -> Tensor:
    """Reconstruction + l1_coeff * L1 for a ReLU SAE; reconstruction only for TopK. x: [batch, d]. Returns a scalar."""
    ### BEGIN SOLUTION
    f = sae.encode(x)
    loss = (sae.decode(f) - x).pow(2).sum(-1).mean()
    if sae.cfg.activation == "relu":
        loss = loss + l1_coeff * f.abs().sum(-1).mean()
    return loss
    ### END SOLUTION


# %% tags=["check"]
check.sae_loss(sae_loss)

# %% tags=["tests"] points=1
check.sae_loss(sae_loss, quiet=True).require()
### BEGIN HIDDEN TESTS
check.sae_loss(sae_loss, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# ### 5. Training on the course model's activations
#
# **The site.** We read the residual stream after layer 1 (`blocks.1.hook_resid_post`), the
# middle of the four layers: by then attention has moved information between positions
# (previous tokens, names, the subject of a fact) while the token itself is still plainly
# there, so the features mix "what this token is" with "what context it is in". An MLP's
# output would show only what that one MLP writes.
#
# A training step: zero the gradients, compute your loss, backpropagate, remove the part
# of each decoder row's gradient along the row (`sae.remove_parallel_gradient()`), step the
# optimizer, and put the decoder rows back to unit norm (`sae.normalize_decoder()`). The
# notebook switched gradients off at the top; do the step inside `with torch.enable_grad():`.

# %% tags=["exercise"]
def training_step(sae, optimizer, x: Tensor, l1_coeff: float) -> tuple[Tensor, Tensor]:
    """One optimisation step of ``sae`` on ``x [batch, d]`` with your ``sae_loss``.

    Returns (the loss before the step, detached; the decoder W_dec after the step, a copy). The
    check runs several steps in a row, as training does.
    """
    ### BEGIN SOLUTION
    with torch.enable_grad():
        optimizer.zero_grad()
        loss = sae_loss(sae, x, l1_coeff)
        loss.backward()
        sae.remove_parallel_gradient()
        optimizer.step()
        sae.normalize_decoder()
    return loss.detach(), sae.W_dec.detach().clone()
    ### END SOLUTION


# %% tags=["check"]
check.training_step(training_step)

# %% tags=["tests"] points=2
check.training_step(training_step, quiet=True).require()
### BEGIN HIDDEN TESTS
check.training_step(training_step, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# Run it: a small TopK SAE (512 features, $k = 16$) on a stream of the course model's
# activations, with a progress bar. `course.saes.ActivationStream` runs the corpus through the
# model a chunk at a time, stops each forward pass at the site, shuffles the tokens and
# serves batches. In a few seconds it learns something; the rest of the chapter uses the
# **shipped SAE** (1024 features, more than a million tokens, `python -m course.training.sae`).
# Training at that length meets **dead features**, ones that stop firing for good. The toolkit's
# trainer revives them: a ReLU SAE's are **resampled** every so often (Bricken et al. 2023: a dead
# feature gets the direction of an input the SAE reconstructs badly); a TopK SAE's get the
# **AuxK** loss (Gao et al. 2024: the dead features' largest pre-activations must reconstruct
# what the live ones missed, which gives them gradient again).

# %%
from tqdm.auto import tqdm

from course.saes import ActivationStream, DictionaryConfig, explained_variance
from course.saes import training_step as toolkit_step

# Your training_step once it passes its check; until then the toolkit's (same step, its own loss).
step_fn = training_step if check.training_step(training_step, quiet=True) else \
    (lambda sae, opt, x, l1: toolkit_step(sae, opt, x))

site = "blocks.1.hook_resid_post"
mine = SparseDictionary(DictionaryConfig(d_in=model.cfg.d_model, d_sae=512, activation="topk", k=16, hook_name=site))
stream = ActivationStream(model, site, batch_size=2048, rows_per_chunk=128, seed=7)
optimizer = torch.optim.Adam(mine.parameters(), lr=3e-3)
batches = iter(stream)
mine.b_dec.copy_(next(batches)[0].mean(0))
for step in tqdm(range(25), desc="training", leave=False):   # the bar goes once done
    x, _ = next(batches)
    loss, _ = step_fn(mine, optimizer, x, 0.0)
print(f"after {stream.tokens_read:,} tokens: loss {float(loss):.2f}, explained variance on the last batch "
      f"{explained_variance(mine(x), x):.2f}")

# %% [markdown]
# ### 6. Measuring an SAE
#
# - **L0**: active features per token (TopK fixes it at $k$).
# - **Explained variance**: $1 - \sum \|x - \hat x\|^2 / \sum \|x - \bar x\|^2$.
# - **Dead** features never fire; **dense** ones fire on more than 10% of tokens.
# - **Loss recovered**: run the model with the SAE's reconstruction *in place of* the
#   activation, and compare its next-token loss with the clean model's and with the
#   activation zeroed: $(L_{zero} - L_{SAE}) / (L_{zero} - L_{clean})$.
#
# Write the middle one: the model's loss with the site replaced, through `run_with_hooks`.

# %% tags=["exercise"]
def spliced_loss(model, sae, tokens: Tensor) -> Tensor:
    """Mean next-token loss of ``model`` on ``tokens [batch, pos]`` with the activation at
    sae.cfg.hook_name replaced by sae(activation). Returns a scalar tensor."""
    # Hint: a hook function (x, hook) that returns the replacement; return_type="loss".
    ### BEGIN SOLUTION
    def replace(x, hook):
        return sae(x)
    return model.run_with_hooks(tokens, fwd_hooks=[(sae.cfg.hook_name, replace)], return_type="loss")
    ### END SOLUTION


# %% tags=["check"]
check.spliced_loss(spliced_loss)

# %% tags=["tests"] points=1
check.spliced_loss(spliced_loss, quiet=True).require()
### BEGIN HIDDEN TESTS
check.spliced_loss(spliced_loss, hidden=True, quiet=True).require()
### END HIDDEN TESTS

# %% [markdown]
# The shipped SAE and yours, measured on held-out corpus text. The shipped SAE records the
# fingerprint of the model weights it was trained on; loading it warns if the model changed.

# %%
sae = load_shipped_sae(model)
print(sae)
shipped = evaluate(model, sae)
print("shipped:", shipped)
print("yours:  ", evaluate(model, mine))
print(f"trained on {sae.cfg.extra['training']['tokens_seen']:,} tokens")

# %% [markdown]
# ### 7. Interpreting features
#
# A feature's **top-activating contexts** show what makes it fire; its decoder direction,
# read through the final layer norm and the unembedding, shows which next tokens it
# **promotes** directly; its **activation histogram** shows how it fires. Rather than hunt by
# eye, the code asks for each kind of token the corpus has (a first name, a digit, a token of
# a country's name, the word just before a capital is said) which feature puts most of its
# activation on that kind (its *precision*), and how many of those tokens it covers (*recall*).

# %%
from course.chapters.ch5_superposition_saes.findings import named_features
from course.neurons import text_stream
from course.saes.features import feature_activations, feature_logit_tokens

text = text_stream(model, n_rows=128, row_len=64, seed=0)
acts = feature_activations(model, sae, text.tokens)
named = named_features(model, text, acts)
for category, found in named.items():
    up, _ = feature_logit_tokens(model, sae, found.feature, k=5)
    print(f"{found}\n    promotes {up}")

# %% [markdown]
# The dashboard: pick a feature (or search for one by the token it promotes, or by a
# category above); its top contexts coloured by activation, the tokens its decoder direction
# promotes and suppresses, its histogram, and a **steer** button that adds the feature's
# direction while the model continues a prompt.

# %%
first = next(iter(named.values())).feature if named else 0
FeatureDashboard(model, sae, text, acts, feature=first, named={k: v.feature for k, v in named.items()})

# %% [markdown]
# ### 8. Steering
#
# Adding a feature's decoder direction to the residual stream while the model generates
# pushes it toward what the feature stands for. Turner et al. (2023) made steering vectors
# another way, **activation addition**: the difference of the streams of two prompts. Here
# the name feature's direction against the difference between a prompt ending in a name and
# one ending in another word, both added at the same size (four times the feature's largest
# activation on the text above; Turner et al. add the raw difference, here it is scaled to
# unit length first so the two directions are compared at equal size), measured on a few
# prompts by how much they change the next-token distribution (KL divergence) and the
# probability that the next token is a name.
#
# A name feature need not make the *next* token a name: what a feature writes is read by the
# layers above as "a name was just here", and what it promotes through the unembedding is
# printed beside it in section 7. So the sweep after the comparison measures what the
# feature's direction is for — the probability of the tokens it promotes — at a range of
# scales, against how far the whole next-token distribution moves (KL), to find where it
# steers and where it breaks the text.

# %%
from course.chapters.ch5_superposition_saes.findings import steering_comparison
from course.data.vocabulary import single_token_names
from course.saes.steering import generate_steered

name_ids = torch.tensor([model.to_single_token(" " + n) for n in single_token_names(model.tokenizer)])
steer_feature = named["name"].feature if "name" in named else first
scale = 4 * float(acts[..., steer_feature].max())
prompts = ["The capital of", "calc: 12 + 30 =", "The favourite sport of", "Then the"]
cmp = steering_comparison(model, sae, steer_feature, name_ids, prompts, plus="Then Mary", minus="Then the", scale=scale)
print(f"adding {scale:.1f} x direction, mean over {len(prompts)} prompts (cosine between the two directions "
      f"{cmp['cosine']:+.2f}):")
print(f"  feature {steer_feature}'s decoder direction: KL {cmp['feature_kl']:.3f}, P(name next) {cmp['feature']:+.3f}")
print(f"  activation addition ('Then Mary' - 'Then the'): KL {cmp['activation_addition_kl']:.3f}, "
      f"P(name next) {cmp['activation_addition']:+.3f}")

from course.chapters.ch5_superposition_saes.findings import steering_sweep, steering_verdict

sweep = steering_sweep(model, sae, steer_feature, prompts, float(acts[..., steer_feature].max()))
for r in sweep["rows"]:
    print(f"{r['multiple']:4.1f}x its largest activation: P(tokens it promotes) {r['promoted_rise']:+.3f}, "
          f"KL {r['kl']:.2f}   'The capital of' -> "
          f"{generate_steered(model, 'The capital of', site, sae.W_dec[steer_feature], r['scale'], 8)!r}")
print(steering_verdict(sweep))

# %% [markdown]
# ## The field's tools: SAE Lens
#
# The shipped SAE is saved in SAE Lens's format (`cfg.json` + `sae_weights.safetensors`), so
# the field's library loads it as it is. SAE Lens stays an *extra* (`pip install -e .[dev]`),
# not a dependency of the course: it brings about 50 packages and a 7-second import, and
# everything the chapter does runs without it. Where it is installed, it gives the same encodings:

# %%
try:
    from sae_lens import SAE
except ImportError:
    print("SAE Lens is not installed (pip install -e .[dev]); the course's own loader reads the same files.")
else:
    from course.saes import SHIPPED

    theirs = SAE.load_from_disk(str(SHIPPED))
    x = read_sites(model, text.tokens[:8], [site])[site].flatten(0, 1)
    print(f"SAE Lens loaded a {type(theirs).__name__} ({theirs.cfg.d_in} -> {theirs.cfg.d_sae}); largest "
          f"difference of encodings: {float((theirs.encode(x) - sae.encode(x)).abs().max()):.2e}")

# %% [markdown]
# ## Summary
#
# - Sparse features are stored in superposition: more features than dimensions, at the price
#   of interference; importance decides which get represented, sparsity how many.
# - Feature dimensionality clusters near simple fractions to the degree printed in section 3.
#   Correlated features cannot be superposed cheaply: with no room for both, a pair is stored
#   along one direction (their sum); anticorrelated ones share a line, pointing opposite
#   ways. The cosines printed above say which happened here.
# - An SAE recovers sparse features from the course model's residual stream; the numbers
#   above measure how well (L0, explained variance, dead features, loss recovered).
# - Features for names, digits and facts were found by code, each with the share of its
#   activation that falls on its kind of token. Adding a feature's direction to the stream was
#   measured against activation addition: the printout gives each one's effect on P(name next)
#   and its KL from the clean run, and what the text becomes as the scale grows.

# %%
print(f"Closing note: shipped SAE at {site}: {shipped}. Named features: "
      + ", ".join(f"{k} = {v.feature} ({v.precision:.0%})" for k, v in named.items())
      + ".")
