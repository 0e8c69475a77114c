"""What every explorer shares: a prompt box, a status line for errors, and a redraw loop."""

from __future__ import annotations

import html

import ipywidgets as widgets


class PromptExplorer(widgets.VBox):
    """A prompt box above controls and a view; subclasses fill :meth:`render`.

    ``render`` returns the widgets to show; an exception becomes a plain message in
    the status line (the previous view stays), never a traceback.
    """

    def __init__(self, model, prompt: str, controls: list | None = None):
        self.model = model
        self.prompt = widgets.Text(value=prompt, description="Prompt", continuous_update=False,
                                   layout=widgets.Layout(width="95%"))
        self.status = widgets.HTML()
        self.view = widgets.VBox()
        self.controls = controls or []
        for w in [self.prompt, *self.controls]:
            w.observe(lambda change: self.refresh(), names="value")
        super().__init__([self.prompt, widgets.HBox(self.controls), self.status, self.view])
        self.add_class("course-explorer")
        self.refresh()

    def render(self) -> list:
        raise NotImplementedError

    def refresh(self) -> None:
        if getattr(self, "_busy", False):   # render() may update its own controls
            return
        self._busy = True
        self.status.value = "<i>computing…</i>"
        try:
            self.view.children = tuple(self.render())
            self.status.value = ""
        except Exception as e:   # shown in the widget, in words; the notebook goes on
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"
        finally:
            self._busy = False


def heat(p: float) -> str:
    """A background colour for a probability in [0, 1] (white to blue)."""
    p = max(0.0, min(1.0, float(p)))
    r = g = int(255 - 155 * p)
    return f"rgb({r},{g},255)"
