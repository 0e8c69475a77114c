"""Chapter 5's explorers: a toy model's feature geometry under sparsity and importance, and an
offline, Neuronpedia-style dashboard of an SAE's features."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.widgets.base import figure_output


# -- superposition explorer ---------------------------------------------------------------------

@dataclass
class SuperpositionView:
    W: torch.Tensor              # [2, feature]
    importance: torch.Tensor     # [feature]
    norms: list[float]
    n_represented: int
    n_superposed: int
    dimensionality: list[float]


def superposition_view(feature_probability: float, importance_decay: float, n_features: int = 5,
                       steps: int = 600, seed: int = 0) -> SuperpositionView:
    """Train ``n_features`` features in two dimensions at one sparsity and importance ``decay**i``."""
    from course.superposition import ToyModel, geometry, train_toy

    if not 0 < feature_probability <= 1:
        raise ValueError(f"feature probability must be in (0, 1]; got {feature_probability}.")
    importance = (importance_decay ** torch.arange(n_features, dtype=torch.float))[None]
    model = ToyModel(1, n_features, 2, seed=seed)
    train_toy(model, torch.full((1, n_features), float(feature_probability)), importance, steps=steps, seed=seed)
    g = geometry(model.W.detach())[0]
    return SuperpositionView(model.W.detach()[0], importance[0], [round(float(v), 3) for v in g.norms],
                             g.n_represented, g.n_superposed, [round(float(v), 3) for v in g.dimensionality])


class SuperpositionExplorer(widgets.VBox):
    """Sliders for the feature probability (log scale) and the importance decay; the five
    features' directions in the two hidden dimensions redrawn on change."""

    def __init__(self, feature_probability: float = 0.05, importance_decay: float = 0.8):
        self.sparsity = widgets.FloatLogSlider(value=feature_probability, base=10, min=-2.5, max=0, step=0.25,
                                               description="P(feature)", continuous_update=False)
        self.decay = widgets.FloatSlider(value=importance_decay, min=0.5, max=1.0, step=0.05,
                                         description="importance", continuous_update=False)
        self.status, self.view = widgets.HTML(), widgets.VBox()
        for w in (self.sparsity, self.decay):
            w.observe(lambda change: self.refresh(), names="value")
        super().__init__([widgets.HBox([self.sparsity, self.decay]), self.status, self.view])
        self.add_class("course-explorer")
        self.refresh()

    def refresh(self) -> None:
        from course.superposition import plot_features_2d

        try:
            v = superposition_view(self.sparsity.value, self.decay.value)
            self.result = v
            fig = plot_features_2d(v.W[None], [f"p = {self.sparsity.value:.3g}"], v.importance[None], size=3.2,
                                   legend=True)
            self.status.value = (f"{v.n_represented} of {len(v.norms)} features represented in 2 dimensions, "
                                 f"{v.n_superposed} in superposition; dimensionality {v.dimensionality}"
                                 + local_minimum_note(v))
            self.view.children = (figure_output(fig),)
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"


def local_minimum_note(v) -> str:
    """A sentence when training kept a less important feature and dropped a more important one:
    gradient descent stopped in a local minimum, not at the best arrangement."""
    kept = [i for i, n in enumerate(v.norms) if n > 0.5]
    dropped = [i for i, n in enumerate(v.norms) if n <= 0.5]
    importance = [float(x) for x in getattr(v, "importance", [])] or [-i for i in range(len(v.norms))]
    inverted = [(d, k) for d in dropped for k in kept if importance[d] > importance[k]]
    if not inverted:
        return ""
    d, k = inverted[0]
    return (f". <b>A local minimum</b>: feature {k} is represented while the more important feature {d} is "
            "dropped; gradient descent from this start did not find the best arrangement (the loss would be lower "
            "with them swapped)")


# -- feature dashboard ----------------------------------------------------------------------------

@dataclass
class FeatureCard:
    feature: int
    contexts: list                   # course.saes.features.FeatureContext
    max_activation: float
    firing_rate: float
    promotes: list[str]
    suppresses: list[str]
    histogram: tuple                 # (counts [bins], edges [bins + 1])


@torch.no_grad()
def feature_card(model, sae, stream, acts, feature: int, k: int = 8) -> FeatureCard:
    """Everything the dashboard shows for one feature. ``acts [row, pos, d_sae]`` over ``stream.tokens``."""
    from course.saes.features import activation_histogram, feature_contexts, feature_logit_tokens

    if not 0 <= feature < acts.shape[-1]:
        raise ValueError(f"feature must be 0..{acts.shape[-1] - 1}; got {feature}.")
    up, down = feature_logit_tokens(model, sae, feature, k=8)
    a = acts[..., feature]
    return FeatureCard(feature, feature_contexts(model, stream.tokens, acts, feature, k), float(a.max()),
                       float((a > 0).float().mean()), up, down, activation_histogram(acts, feature))


def feature_promoting(model, sae, token: str) -> int:
    """The feature whose decoder direction raises the logit of ``token`` (one token) the most."""
    from course.saes.features import decoder_logit_effects

    return int(decoder_logit_effects(model, sae)[:, model.to_single_token(token)].argmax())


def feature_card_html(card: FeatureCard) -> str:
    top = max(card.max_activation, 1e-6)
    rows = []
    for c in card.contexts:
        cells = "".join(
            f"<span title='{x:.2f}' style='background:rgba(0,140,255,{max(0.0, min(1.0, x / top)):.2f});"
            f"{'border:1px solid #000;' if i == c.at else ''}white-space:pre;font-family:monospace'>"
            f"{html.escape(t)}</span>" for i, (t, x) in enumerate(zip(c.tokens, c.activations)))
        rows.append(f"<div>{cells} <small>({c.activations[c.at]:.2f})</small></div>")
    chips = lambda ts: " ".join(f"<code>{html.escape(repr(t))}</code>" for t in ts)  # noqa: E731
    return (f"<b>Feature {card.feature}</b> — active on {card.firing_rate:.2%} of tokens, max {card.max_activation:.2f}"
            f"<br>{''.join(rows)}<p><b>promotes</b> {chips(card.promotes)}<br><b>suppresses</b> {chips(card.suppresses)}</p>")


class FeatureDashboard(widgets.VBox):
    """Pick a feature (number, a named category, or the token it promotes); see its top contexts,
    logit effects and histogram; **Steer** continues a prompt with the feature's direction added."""

    def __init__(self, model, sae, stream, acts, feature: int = 0, named: dict | None = None, k: int = 8):
        self.model, self.sae, self.stream, self.acts, self.k = model, sae, stream, acts, k
        self.feature = widgets.BoundedIntText(value=feature, min=0, max=acts.shape[-1] - 1, description="Feature")
        self.named = widgets.Dropdown(options=[("—", -1)] + [(f"{k} ({v})", v) for k, v in (named or {}).items()],
                                      value=-1, description="Named")
        self.search = widgets.Text(placeholder="a token, e.g. ' Mary'", description="Promotes", continuous_update=False)
        self.prompt = widgets.Text(value="The capital of", description="Prompt")
        # Starts low: at large scales the added direction swamps the stream and the text breaks
        # (chapter 5's steering sweep measures where).
        self.scale = widgets.FloatSlider(value=2.0, min=0, max=30, step=0.5, description="scale")
        self.steer = widgets.Button(description="Steer")
        self.status, self.view, self.steered = widgets.HTML(), widgets.VBox(), widgets.HTML()
        self.feature.observe(lambda c: self.refresh(), names="value")
        self.named.observe(lambda c: self._pick(c["new"]), names="value")
        self.search.observe(lambda c: self._search(c["new"]), names="value")
        self.steer.on_click(lambda b: self.run_steer())
        super().__init__([widgets.HBox([self.feature, self.named, self.search]), self.status, self.view,
                          widgets.HBox([self.prompt, self.scale, self.steer]), self.steered])
        self.add_class("course-explorer")
        self.refresh()

    def _pick(self, value):
        if value is not None and value >= 0:
            self.feature.value = value

    def _search(self, token):
        if token:
            try:
                self.feature.value = feature_promoting(self.model, self.sae, token)
            except Exception as e:
                self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"

    def refresh(self) -> None:
        try:
            self.card = feature_card(self.model, self.sae, self.stream, self.acts, self.feature.value, self.k)
            import matplotlib.pyplot as plt

            counts, edges = self.card.histogram
            fig, ax = plt.subplots(figsize=(3.2, 1.6))
            ax.bar(edges[:-1], counts, width=float(edges[1] - edges[0]), align="edge", color="#08f")
            ax.set_xlabel("activation (non-zero)", fontsize=7), ax.tick_params(labelsize=6)
            self.view.children = (widgets.HBox([widgets.HTML(feature_card_html(self.card)), figure_output(fig)]),)
            self.status.value = ""
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"

    def run_steer(self) -> str:
        from course.saes.steering import generate_steered

        try:
            site, d = self.sae.cfg.hook_name, self.sae.W_dec[self.feature.value]
            plain = generate_steered(self.model, self.prompt.value, site, None, 0.0, 8)
            steered = generate_steered(self.model, self.prompt.value, site, d, self.scale.value, 8)
            self.steered.value = (f"<code>{html.escape(self.prompt.value)}</code> → plain <code>{html.escape(plain)}"
                                  f"</code>; steered <code>{html.escape(steered)}</code>")
            return steered
        except Exception as e:
            self.steered.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"
            return ""
