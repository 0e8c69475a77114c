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
            self.view.children = ()          # no stale view under the error: it would answer another input
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"
        finally:
            self._busy = False


def heat(p: float) -> str:
    """A background colour for a probability in [0, 1] (white to blue)."""
    p = max(0.0, min(1.0, float(p)))
    r = g = int(255 - 155 * p)
    return f"rgb({r},{g},255)"


def inline_html(rendered) -> "IPython.display.HTML":  # noqa: F821
    """circuitsvis output as HTML with its JavaScript bundle inlined (never the CDN form).

    circuitsvis picks the CDN form whenever a probe of the internet succeeds; the
    course works offline and in the book, so it always takes ``local_src``.
    """
    from IPython.display import HTML

    return HTML(rendered.local_src)


def html_output(html_text: str, **layout) -> "widgets.Output":
    """An Output widget holding ``html_text`` (set directly: works with or without a kernel)."""
    out = widgets.Output(layout=widgets.Layout(**layout))
    out.outputs = ({"output_type": "display_data", "data": {"text/html": html_text}, "metadata": {}},)
    return out


def figure_output(fig) -> "widgets.Output":
    """An Output widget holding a matplotlib figure as a PNG; the figure is closed."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    out = widgets.Output()
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": "<figure>"}},)
    return out
