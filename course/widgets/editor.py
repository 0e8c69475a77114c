"""The fact editor: rewrite a country's capital with ROME, compare the edited model's answers
with the original's, and undo."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.data import facts
from course.editing import Edit, edit_prompts, edit_requests, request_for, rome_edit


@dataclass
class EditView:
    """One row per prompt: (group, prompt, original answer, edited answer)."""

    country: str
    new_answer: str
    rows: list[tuple[str, str, str, str]]


def _country(name: str) -> facts.Country:
    for c in facts.countries():
        if c.name.lower() == name.strip().lower():
            return c
    raise ValueError(f"no country called {name.strip()!r}; try one of {', '.join(c.name for c in facts.countries()[:5])}, ...")


@torch.no_grad()
def _answers(model, texts: list[str]) -> list[str]:
    return [model.to_string(model(t)[0, -1].argmax()) for t in texts]


def edit_fact(model, C, layer: int, country: str, new_capital: str, n_other: int = 5) -> tuple[Edit, EditView]:
    """Apply a ROME edit "the capital of ``country`` is ``new_capital``" to ``model`` (undo with
    ``edit.undo(model)``) and list answers before and after on paraphrases and other countries."""
    c = _country(country)
    new = " " + new_capital.strip()
    if not new_capital.strip():
        raise ValueError("type a new capital.")
    model.to_single_token(new)          # a one-token answer: the edit targets one token
    request = request_for(c, "capital", new)
    prompts = edit_prompts(model, request, n_other=n_other)
    groups = ([("paraphrase", t) for t in [request.prompt] + prompts.generalization]
              + [("other country", t) for t, _ in prompts.specificity]
              + [("same country", t) for t, _ in prompts.same_subject])
    texts = [t for _, t in groups]
    before = _answers(model, texts)
    edit = rome_edit(model, layer, request, C).apply(model)
    after = _answers(model, texts)
    return edit, EditView(c.name, new, [(g, t, b, a) for (g, t), b, a in zip(groups, before, after)])


def view_html(view: EditView) -> str:
    rows = "".join(
        f"<tr><td>{g}</td><td>{html.escape(t)}</td><td><code>{html.escape(repr(b))}</code></td>"
        f"<td style='background:{'#dfd' if a == view.new_answer and g == 'paraphrase' else ('#fdd' if a != b else '')}'>"
        f"<code>{html.escape(repr(a))}</code></td></tr>" for g, t, b, a in view.rows)
    return ("<table style='border-collapse:collapse'><tr><th></th><th>prompt</th><th>original</th><th>edited</th></tr>"
            f"{rows}</table>")


class FactEditor(widgets.VBox):
    """Country and new-capital boxes, Edit and Undo buttons, and the before/after table."""

    def __init__(self, model, C, layer: int, country: str | None = None, new_capital: str | None = None):
        self.model, self.C, self.layer = model, C, layer
        if country is None or new_capital is None:     # a default edit the model can make: a one-token capital
            request = edit_requests(model, 1)[0]
            country, new_capital = request.country, request.new_answer.strip()
        self.country = widgets.Text(value=country, description="Country")
        self.new_capital = widgets.Text(value=new_capital, description="New capital")
        self.edit_button = widgets.Button(description="Edit", button_style="primary")
        self.undo_button = widgets.Button(description="Undo")
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        self.edit: Edit | None = None
        self.view: EditView | None = None
        self.edit_button.on_click(lambda _: self.apply())
        self.undo_button.on_click(lambda _: self.undo())
        super().__init__([widgets.HBox([self.country, self.new_capital, self.edit_button, self.undo_button]),
                          self.status, self.table])
        self.add_class("course-explorer")
        self.apply()

    def apply(self) -> None:
        self.undo()
        self.status.value = "<i>editing…</i>"
        try:
            self.edit, self.view = edit_fact(self.model, self.C, self.layer, self.country.value, self.new_capital.value)
            self.table.value = view_html(self.view)
            self.status.value = f"edited: the capital of {html.escape(self.view.country)} is now {html.escape(self.view.new_answer)!s}"
        except Exception as e:   # shown in the widget, in words
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"

    def undo(self) -> None:
        if self.edit is not None:
            self.edit.undo(self.model)
            self.edit = None
            self.status.value = "undone: the model is as it was trained (the table shows the edit you undid)"
