"""Chapter 6's widgets: the addition explorer, the Fourier viewer and the grokking timeline."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.widgets.base import figure_output, heat


class _Viewer(widgets.VBox):
    """Controls above a status line and a view; ``draw`` fills the view, an error shows in the status."""

    def __init__(self, controls: list):
        self.status, self.out = widgets.HTML(), widgets.VBox()
        for w in controls:
            w.observe(lambda change: self.refresh(), names="value")
        super().__init__([widgets.HBox(controls), self.status, self.out])
        self.add_class("course-explorer")   # how the book and its browser test find every explorer
        self.refresh()

    def draw(self) -> list:
        raise NotImplementedError

    def refresh(self) -> None:
        try:
            self.out.children = tuple(self.draw())
            self.status.value = ""
        except Exception as e:   # shown in the widget, in words
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"


@dataclass
class AdditionView:
    """``attention [layer, head, 4]``: attention from the position predicting the answer's
    ``target`` digit ("ones" or "tens") to the operand digits; ``neurons``: (layer, neuron,
    activation, pattern) of the most active classified heuristic neurons there."""

    a: int
    b: int
    answer: str
    right: bool
    attention: torch.Tensor
    neurons: list[tuple[int, int, float, str]]
    target: str = "ones"


@torch.no_grad()
def addition_view(model, a: int, b: int, classes: dict | None = None, k: int = 8, target: str = "ones") -> AdditionView:
    """``classes``: {(layer, neuron): pattern} from the chapter's heuristic classification;
    ``target``: the digit whose predicting position is shown, "ones" or "tens"."""
    from course.arithmetic import OPERAND_DIGITS, addition_batch
    from course.data.addition import OPERANDS, AdditionPrompt

    if a not in OPERANDS or b not in OPERANDS:
        raise ValueError(f"a and b must be two-digit numbers ({OPERANDS.start}..{OPERANDS.stop - 1}); got {a} and {b}.")
    if target not in ("ones", "tens"):
        raise ValueError(f"target must be 'ones' or 'tens', got {target!r}")
    p = AdditionPrompt(a, b)
    said = model.generate(p.text, max_new_tokens=len(model.to_tokens(p.answer, prepend_bos=False)[0]))[len(p.text):]
    batch = addition_batch(model, [p])
    q = int((batch.ones_pos if target == "ones" else batch.tens_pos)[0] - 1)     # where that digit is predicted
    _, cache = model.run_with_cache(batch.tokens.to(model.device))
    att = torch.stack([cache["pattern", l][0, :, q, batch.operand_pos].cpu() for l in range(model.cfg.n_layers)])
    firing = []
    for (layer, n), pattern in (classes or {}).items():
        firing.append((layer, n, float(cache["post", layer][0, q, n]), pattern))
    firing.sort(key=lambda t: -t[2])
    assert len(OPERAND_DIGITS) == att.shape[-1]
    return AdditionView(a, b, said.strip(), said.strip() == str(a + b), att, firing[:k], target)


def addition_html(view: AdditionView) -> str:
    from course.arithmetic import OPERAND_DIGITS

    mark = "✓" if view.right else f"✗ (right: {view.a + view.b})"
    head = "".join(f"<th>{d}</th>" for d in OPERAND_DIGITS)
    rows = "".join(f"<tr><td>L{l}H{h}</td>" + "".join(
        f"<td style='background:{heat(x)}'>{x:.2f}</td>" for x in view.attention[l, h].tolist()) + "</tr>"
        for l in range(view.attention.shape[0]) for h in range(view.attention.shape[1]))
    neurons = "".join(f"<li>L{l}N{n}: {a:.2f} — {html.escape(p)}</li>" for l, n, a, p in view.neurons)
    return (f"<p><b>{view.a} + {view.b} =</b> the model says <b>{html.escape(view.answer)}</b> {mark}</p>"
            f"<p>attention from the position predicting the answer's {view.target} digit:</p>"
            f"<table><tr><th>head</th>{head}</tr>{rows}</table>"
            f"<p>heuristic neurons firing most there"
            + ("" if view.target == "ones" else " (they were classified at the ones digit's position)")
            + f":</p><ul>{neurons or '<li>(none classified)</li>'}</ul>")


class AdditionExplorer(_Viewer):
    """Two number boxes; the model's answer, its attention to the operand digits and the
    heuristic neurons firing. Errors show in the widget."""

    def __init__(self, model, a: int = 36, b: int = 59, classes: dict | None = None):
        self.model, self.classes = model, classes
        # Plain number boxes: a bounded box would silently turn 7 into 10; here an operand out of
        # range reaches addition_view, whose error says what is allowed.
        self.a = widgets.IntText(value=a, description="a")
        self.b = widgets.IntText(value=b, description="b")
        self.target = widgets.ToggleButtons(options=["ones", "tens"], value="ones", description="digit")
        super().__init__([self.a, self.b, self.target])

    def draw(self) -> list:
        self.view = addition_view(self.model, self.a.value, self.b.value, self.classes, target=self.target.value)
        return [widgets.HTML(addition_html(self.view))]


@dataclass
class FourierView:
    """The embedding's norm per frequency ``[(p-1)/2]``; head ``head``'s attention from ``=`` to ``a``
    over (a, b) and its 2-D Fourier coefficients' sizes; one neuron's activation over (a, b) and
    its 2-D Fourier coefficients' sizes; the logit of answer 0 over (a, b) and its part at ``freq``."""

    freq: int
    head: int
    attention_grid: torch.Tensor
    attention_fourier: torch.Tensor
    embedding_norms: torch.Tensor
    neuron: int
    neuron_grid: torch.Tensor
    neuron_fourier: torch.Tensor
    logit_grid: torch.Tensor
    logit_at_freq: torch.Tensor


@torch.no_grad()
def fourier_view(model, freq: int, head: int = 0) -> FourierView:
    """``freq`` in 1..(p-1)/2; the neuron shown is the one whose activation is most concentrated at it."""
    from course.fourier import all_logits, fourier_basis, frequency_norms, project_sum_waves
    from course.models.modular import P, all_pairs

    if not 1 <= freq <= P // 2:
        raise ValueError(f"the frequency must be 1..{P // 2}; got {freq}.")
    if not 0 <= head < model.cfg.n_heads:
        raise ValueError(f"the head must be 0..{model.cfg.n_heads - 1}; got {head}.")
    _, cache = model.run_with_cache(all_pairs(), names_filter=["blocks.0.mlp.hook_post", "blocks.0.attn.hook_pattern"])
    post = cache["post", 0][:, -1].cpu().reshape(P, P, -1)              # [a, b, d_mlp]
    attention = cache["pattern", 0][:, head, -1, 0].cpu().reshape(P, P)  # from "=" to a
    basis, _ = fourier_basis(P)
    coef = torch.einsum("ia,abn,jb->ijn", basis, post, basis)           # [p, p, d_mlp]
    at = coef[2 * freq - 1:2 * freq + 1].pow(2).sum((0, 1)) + coef[:, 2 * freq - 1:2 * freq + 1].pow(2).sum((0, 1))
    share = at / coef[1:, 1:].pow(2).sum((0, 1)).clamp_min(1e-12)
    n = int(share.argmax())
    logits = all_logits(model)
    return FourierView(freq, head, attention, (basis @ attention @ basis.T).abs(),
                       frequency_norms(model.W_E[:P].cpu()), n, post[:, :, n], coef[:, :, n].abs(),
                       logits[:, :, 0], project_sum_waves(logits, [freq])[:, :, 0])


def fourier_figure(view: FourierView):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 4, figsize=(15, 6.4))
    ax = ax.flatten()
    ax[7].axis("off")
    ax[0].bar(range(1, len(view.embedding_norms) + 1), view.embedding_norms)
    ax[0].axvline(view.freq, color="r", lw=0.8)
    ax[0].set(title="embedding: norm per frequency", xlabel="k")
    def without_constant(coef):
        # The (0, 0) coefficient is the mean; left in, it takes the whole colour scale.
        coef = coef.clone()
        coef[0, 0] = 0
        return coef

    limit = float(view.logit_grid.abs().max())       # one scale for the logit and its part at k
    fourier_axes = dict(xlabel="b: Fourier component (2k-1 cos k, 2k sin k)", ylabel="a: Fourier component")
    for a, img, title, axes, scale in [
            (ax[1], view.attention_grid, f"head {view.head}: attention = -> a", dict(xlabel="b", ylabel="a"), None),
            (ax[2], without_constant(view.attention_fourier), f"head {view.head}: |2-D Fourier|, constant left out",
             fourier_axes, None),
            (ax[3], view.neuron_grid, f"neuron {view.neuron} over (a, b)", dict(xlabel="b", ylabel="a"), None),
            (ax[4], without_constant(view.neuron_fourier), f"neuron {view.neuron}: |2-D Fourier|, constant left out",
             fourier_axes, None),
            (ax[5], view.logit_grid, "logit of c = 0 over (a, b)", dict(xlabel="b", ylabel="a"), limit),
            (ax[6], view.logit_at_freq, f"its part cos/sin(w(a+b)), k = {view.freq} (same scale)",
             dict(xlabel="b", ylabel="a"), limit)]:
        if scale is not None:
            a.imshow(img, cmap="RdBu_r", vmin=-scale, vmax=scale)
        else:
            a.imshow(img, cmap="RdBu_r" if img.min() < 0 else "viridis")
        a.set(title=title, **axes)
        a.title.set_fontsize(8)
    fig.tight_layout()
    return fig


class FourierViewer(_Viewer):
    """A frequency picker over :func:`fourier_view`."""

    def __init__(self, model, freq: int = 1, freqs: list[int] | None = None):
        self.model = model
        self.freq = widgets.Dropdown(options=freqs or list(range(1, 57)), value=freq, description="frequency")
        self.head = widgets.Dropdown(options=list(range(model.cfg.n_heads)), value=0, description="head")
        super().__init__([self.freq, self.head])

    def draw(self) -> list:
        self.view = fourier_view(self.model, self.freq.value, self.head.value)
        return [figure_output(fourier_figure(self.view))]


@dataclass
class GrokkingView:
    step: int
    curve: list[dict]
    measures: list[dict]
    embedding_norms: torch.Tensor


@torch.no_grad()
def grokking_view(step: int, measures: list[dict], path=None) -> GrokkingView:
    """The loss curve and progress measures with ``step`` (a shipped checkpoint) marked, and the
    embedding's norm per frequency at that checkpoint."""
    from course.fourier import frequency_norms
    from course.models.modular import P, load_checkpoints, loss_curve

    states = load_checkpoints(path)
    if step not in states:
        raise ValueError(f"no checkpoint at step {step}; the shipped ones are {list(states)}.")
    return GrokkingView(step, loss_curve(path), measures, frequency_norms(states[step]["transformer.wte.weight"][:P]))


def grokking_figure(view: GrokkingView):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 3.2))
    steps = [r["step"] for r in view.curve]
    ax[0].semilogy(steps, [r["train_loss"] for r in view.curve], label="train")
    ax[0].semilogy(steps, [r["test_loss"] for r in view.curve], label="test")
    ms = [m["step"] for m in view.measures]
    for key in ("restricted_loss", "excluded_loss"):
        ax[0].semilogy(ms, [m[key] for m in view.measures], "o--", label=key.replace("_", " "))
    ax[1].plot(ms, [m["weight_norm"] for m in view.measures], "o-")
    ax[1].set(title="sum of squared weights", xlabel="step")
    for a in ax[:2]:
        a.axvline(view.step, color="k", lw=0.8)
    ax[0].set(title="loss", xlabel="step")
    ax[0].legend(fontsize=7)
    ax[2].bar(range(1, len(view.embedding_norms) + 1), view.embedding_norms)
    ax[2].set(title=f"embedding per frequency at step {view.step}", xlabel="k")
    fig.tight_layout()
    return fig


class GrokkingTimeline(_Viewer):
    """A slider over the shipped checkpoints; redraws the curves (step marked) and the Fourier picture."""

    def __init__(self, measures: list[dict], path=None):
        self.measures, self.path = measures, path
        steps = [m["step"] for m in measures]
        self.step = widgets.SelectionSlider(options=steps, value=steps[-1], description="checkpoint")
        super().__init__([self.step])

    def draw(self) -> list:
        self.view = grokking_view(self.step.value, self.measures, self.path)
        return [figure_output(grokking_figure(self.view))]
