"""The patching explorer (a patching map, click a cell for its head's attention) and the IOI
explorer (a sentence's logit difference, split by the circuit's classes)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course.patching import attribution_sweep, logit_diff, normalized, patch_sweep
from course.widgets.base import figure_output

METRICS = ("normalized logit difference", "logit difference")
WHAT = {"every head (layer × head)": "heads", "residual stream (layer × position)": "resid_pre",
        "attention output (layer × position)": "attn_out", "MLP output (layer × position)": "mlp_out"}
METHODS = ("activation patching", "attribution patching")


@dataclass
class PatchingMap:
    """``values [row][col]``: the metric with that cell's clean activation patched into the ABC run."""

    what: str
    metric: str
    method: str
    values: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    tokens: list[str]            # the group's first clean prompt
    clean: float
    corrupt: float


def _group(data, group: int):
    rows = data.group == group
    if not bool(rows.any()):
        raise ValueError(f"no sentence shape {group}: the dataset has {int(data.group.max()) + 1}.")
    n_pos = int(data.end_pos[rows].max()) + 1
    return (data.clean[rows, :n_pos], data.abc[rows, :n_pos], data.end_pos[rows], data.io_tok[rows],
            data.s_tok[rows])


@torch.no_grad()
def patching_map(model, data, group: int = 0, metric: str = METRICS[0], what: str = "heads",
                 method: str = METHODS[0], progress=None) -> PatchingMap:
    """Patch clean activations of one sentence shape's prompts into their ABC run, cell by cell."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    clean, abc, end, io, s = _group(data, group)
    ld_clean = float(logit_diff(model(clean), end, io, s).mean())
    ld_abc = float(logit_diff(model(abc), end, io, s).mean())

    def fn(logits):
        ld = logit_diff(logits, end, io, s).mean()
        return normalized(ld, ld_clean, ld_abc) if metric == METRICS[0] else ld

    _, cache = model.run_with_cache(clean)
    if method == METHODS[0]:
        values = patch_sweep(model, abc, cache, fn, what, progress=progress,
                             positions=end if what == "heads" else None)
    else:
        with torch.enable_grad():
            values = attribution_sweep(model, abc, cache, fn, what)
        values = values + float(fn(model(abc)))
    tokens = model.to_str_tokens(clean[0])
    cols = [f"H{h}" for h in range(model.cfg.n_heads)] if what == "heads" else [repr(t) for t in tokens]
    return PatchingMap(what, metric, method, values.tolist(), [f"L{l}" for l in range(model.cfg.n_layers)], cols,
                       tokens, float(fn(model(clean))), float(fn(model(abc))))


@torch.no_grad()
def head_attention(model, tokens: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """One head's attention pattern ``[q, k]`` on one prompt ``tokens [pos]``."""
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise ValueError(f"no head L{layer}H{head} in a model of {model.cfg.n_layers} x {model.cfg.n_heads} heads.")
    _, cache = model.run_with_cache(tokens[None], names_filter=f"blocks.{layer}.attn.hook_pattern")
    return cache["pattern", layer][0, head].cpu()


def _colour(v: float, scale: float) -> str:
    """Blue for positive, red for negative: the chapter's static maps' colours (matplotlib's RdBu)."""
    x = max(-1.0, min(1.0, v / scale)) if scale else 0.0
    fade = int(255 - 200 * abs(x))
    return f"rgb({fade},{fade},255)" if x > 0 else f"rgb(255,{fade},{fade})"


class PatchingExplorer(widgets.VBox):
    """Sentence shape, metric, what to patch and method; a clickable map; a cell's detail below."""

    def __init__(self, model, data, group: int = 0):
        self.model, self.data = model, data
        n_groups = int(data.group.max()) + 1
        self.group = widgets.Dropdown(options=[(data.prompts[int((data.group == g).nonzero()[0])].text[:60] + "…", g)
                                               for g in range(n_groups)], value=group, description="Sentence")
        self.metric = widgets.Dropdown(options=METRICS, description="Metric")
        self.what = widgets.Dropdown(options=list(WHAT), description="Patch")
        self.method = widgets.Dropdown(options=METHODS, description="Method")
        self.status = widgets.HTML()
        self.grid = widgets.VBox()
        self.detail = widgets.VBox()
        self.map: PatchingMap | None = None
        for w in (self.group, self.metric, self.what, self.method):
            w.observe(lambda change: self.refresh(), names="value")
        super().__init__([widgets.HBox([self.group, self.metric]), widgets.HBox([self.what, self.method]),
                          self.status, self.grid, self.detail])
        self.add_class("course-explorer")
        self.refresh()

    def _progress(self, done: int, total: int) -> None:
        self.status.value = f"<i>{html.escape(self.method.value)}… layer {done} of {total}</i>"

    def refresh(self) -> None:
        self.status.value = f"<i>{html.escape(self.method.value)}…</i>"
        try:
            self.map = patching_map(self.model, self.data, self.group.value, self.metric.value, WHAT[self.what.value],
                                    self.method.value, progress=self._progress)
            self.grid.children = (self._buttons(self.map),)
            self.detail.children = ()
            m = self.map
            self.status.value = (f"{html.escape(m.metric)}: clean {m.clean:.2f}, ABC {m.corrupt:.2f}. "
                                 "Click a cell.")
        except Exception as e:   # shown in the widget, in words
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"

    def _buttons(self, m: PatchingMap):
        scale = max(abs(v) for row in m.values for v in row) or 1.0
        rows = []
        for r, row in enumerate(m.values):
            cells = [widgets.Label(m.row_labels[r], layout=widgets.Layout(width="32px"))]
            for c, v in enumerate(row):
                b = widgets.Button(description=f"{v:.2f}", tooltip=f"{m.row_labels[r]} {m.col_labels[c]}",
                                   layout=widgets.Layout(width="52px", height="24px", padding="0"))
                b.style.button_color = _colour(v, scale)
                b.on_click(lambda _, r=r, c=c: self.select(r, c))
                cells.append(b)
            rows.append(widgets.HBox(cells))
        header = widgets.HBox([widgets.Label("", layout=widgets.Layout(width="32px"))]
                              + [widgets.Label(l[:7], layout=widgets.Layout(width="52px")) for l in m.col_labels])
        return widgets.VBox([header, *rows])

    def select(self, row: int, col: int) -> None:
        """Show a cell's detail: a head's attention on the group's first prompt, or the token patched."""
        m = self.map
        try:
            if m.what == "heads":
                clean, *_ = _group(self.data, self.group.value)
                pattern = head_attention(self.model, clean[0], row, col)
                fig, ax = plt.subplots(figsize=(5, 4.5))
                ax.imshow(pattern.numpy(), cmap="Blues", vmin=0, vmax=1)
                ax.set_xticks(range(len(m.tokens)), m.tokens, rotation=90, fontsize=7)
                ax.set_yticks(range(len(m.tokens)), m.tokens, fontsize=7)
                word = "patched" if m.method == METHODS[0] else "attribution estimate"
                ax.set_title(f"L{row}H{col} attention ({word}: {m.values[row][col]:.2f})")
                self.detail.children = (figure_output(fig),)
            else:
                self.detail.children = (widgets.HTML(
                    f"layer {row}, position {col} ({html.escape(m.col_labels[col])}): "
                    + ("patching the clean" if m.method == METHODS[0] else "attribution patching estimates, for the clean")
                    + f" {m.what} there, {m.values[row][col]:.2f}"),)
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"


# -- the IOI explorer ----------------------------------------------------------------------------

CLASSES = ("name_movers", "s_inhibition", "subject_suppression", "duplicate_token", "induction")


@dataclass
class IOIBreakdown:
    """A prompt's logit(IO) − logit(S) and each part's direct share of it; the parts sum to it."""

    text: str
    logit_diff: float
    parts: dict[str, float]


@torch.no_grad()
def ioi_breakdown(model, template: str, io: str, s: str, report) -> IOIBreakdown:
    """Fill ``template`` (with ``{IO}`` and ``{S}``) and split the logit difference at its last
    token into direct contributions: each circuit class's heads (a head in two classes counts in
    the first), the other heads, the MLPs, and the embeddings with every bias."""
    if "{IO}" not in template or "{S}" not in template:
        raise ValueError("the sentence needs {IO} and {S} where the names go.")
    io, s = io.strip(), s.strip()
    if not io or not s or io == s:
        raise ValueError("type two different names.")
    text = template.replace("{IO}", io).replace("{S}", s)
    io_tok, s_tok = model.to_single_token(" " + io), model.to_single_token(" " + s)
    logits, cache = model.run_with_cache(text)
    direction = model.W_U[:, io_tok] - model.W_U[:, s_tok]
    scale = cache["ln_final.hook_scale"][0, -1]

    def direct(x):                      # what a write x [..., d_model] adds to the logit difference
        return float(((x - x.mean(-1, keepdim=True)) / scale * model.ln_final_w) @ direction)

    owner = {}
    for cls in CLASSES:
        for h in getattr(report, cls):
            owner.setdefault(tuple(h), cls)
    parts = {cls: 0.0 for cls in CLASSES} | {"other heads": 0.0, "MLPs": 0.0}
    rest = cache["embed"][0, -1] + cache["pos_embed"][0, -1]
    for layer in range(model.cfg.n_layers):
        z = cache["z", layer][0, -1]                                          # [head, d_head]
        for head in range(model.cfg.n_heads):
            parts[owner.get((layer, head), "other heads")] += direct(z[head] @ model.W_O[layer, head])
        parts["MLPs"] += direct(cache["mlp_out", layer][0, -1])
        rest = rest + model.b_O[layer]
    parts["embeddings and biases"] = direct(rest) + float(model.ln_final_b @ direction)
    ld = float(logits[0, -1, io_tok] - logits[0, -1, s_tok])
    return IOIBreakdown(text, ld, parts)


class IOIExplorer(widgets.VBox):
    """Two names and a sentence; the logit difference and a bar per part."""

    def __init__(self, model, report, template: str = "When {IO} and {S} went to the store, {S} gave a drink to",
                 io: str = "Mary", s: str = "John"):
        self.model, self.report = model, report
        self.template = widgets.Text(value=template, description="Sentence", continuous_update=False,
                                     layout=widgets.Layout(width="95%"))
        self.io = widgets.Text(value=io, description="IO", continuous_update=False)
        self.s = widgets.Text(value=s, description="S", continuous_update=False)
        self.status = widgets.HTML()
        self.view = widgets.VBox()
        self.breakdown: IOIBreakdown | None = None
        for w in (self.template, self.io, self.s):
            w.observe(lambda change: self.refresh(), names="value")
        super().__init__([self.template, widgets.HBox([self.io, self.s]), self.status, self.view])
        self.add_class("course-explorer")
        self.refresh()

    def refresh(self) -> None:
        try:
            b = self.breakdown = ioi_breakdown(self.model, self.template.value, self.io.value, self.s.value, self.report)
            fig, ax = plt.subplots(figsize=(6, 2.6))
            names = [k.replace("_", " ") for k in b.parts]
            ax.barh(names, list(b.parts.values()), color=["tab:red" if v < 0 else "tab:blue" for v in b.parts.values()])
            ax.axvline(0, color="k", lw=0.6)
            ax.invert_yaxis()
            ax.set_xlabel("direct contribution to logit(IO) − logit(S)")
            self.view.children = (figure_output(fig),)
            self.status.value = (f"{html.escape(b.text)!s} → logit({html.escape(self.io.value.strip())}) − "
                                 f"logit({html.escape(self.s.value.strip())}) = <b>{b.logit_diff:.2f}</b>")
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"
