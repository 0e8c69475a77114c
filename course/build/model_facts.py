"""What the README and the book's front page say about the shipped course model, written from
its own files (``config.json``, ``evaluation.json``, ``training_config.json``, the weights), so
that no figure typed by hand can drift from the card.

Each page holds one generated block between :data:`START` and :data:`END`; ``python -m
course.build`` rewrites it and ``--check`` reports it stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from course.build.targets import ROOT

MODEL = ROOT / "course" / "assets" / "course-gpt2"
START = "<!-- model-facts: written by `python -m course.build` from course/assets/course-gpt2 -->"
END = "<!-- /model-facts -->"


class MissingMarkers(ValueError):
    """A page lacks the markers its generated block goes between."""


def model_facts(model_dir: Path = MODEL) -> dict:
    """The shipped model's architecture, size, held-out figures and circuit, from its files."""
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    training = json.loads((model_dir / "training_config.json").read_text())
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        # Tied embeddings are stored once; the attention masks HF keeps as buffers are no parameters.
        params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()
                     if k.split(".")[-2:] != ["attn", "bias"])
    return {"n_layer": config["n_layer"], "n_head": config["n_head"], "d_model": config["n_embd"],
            "vocab": config["vocab_size"], "n_ctx": config["n_positions"], "params": params,
            "figures": evaluation["figures"], "heads": evaluation["heads"],
            "final": evaluation.get("final_families", {}), "circuit": evaluation.get("circuit"),
            "training": training}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _heads(heads) -> str:
    return ", ".join(f"L{l}H{h}" for l, h in heads) or "none"


def _circuit_text(circuit: dict) -> str:
    """The classes as measured; a class whose heads fail its definition is named only as candidates."""
    from course.circuits.ioi import NM_ATTENTION

    fig = circuit["figures"]
    movers, attention, share = circuit["name_movers"], fig["name_mover_attention_to_io"], fig["name_mover_share"]
    if movers and attention >= NM_ATTENTION and share > 0:
        parts = [f"name movers {_heads(movers)} (attention to IO {attention:.2f}, {share:.2f} of the logit difference)"]
    elif movers:
        parts = [f"no name movers: the candidates {_heads(movers)} attend to IO {attention:.2f} (a name mover: "
                 f"at least {NM_ATTENTION}) and write {share:+.2f} of the logit difference"]
    else:
        parts = ["no name movers"]
    parts.append(f"S-inhibition heads {_heads(circuit['s_inhibition'])} (their ABC output removes "
                 f"{fig['s_inhibition_removed']:.2f} of the logit difference)" if circuit["s_inhibition"]
                 else "no S-inhibition heads")
    parts.append(f"duplicate-token heads {_heads(circuit['duplicate_token'])} (removing "
                 f"{fig['duplicate_removed']:.2f})" if circuit["duplicate_token"] else "no duplicate-token heads")
    if circuit["subject_suppression"]:
        parts.append(f"subject-suppression heads {_heads(circuit['subject_suppression'])}, which attend to S2 and "
                     f"push S down, write {fig['subject_suppression_share']:.2f} of it")
    return "; ".join(parts) + "."


def readme_block(f: dict) -> str:
    fig, circuit, final = f["figures"], f["circuit"] or {}, f["final"]
    lines = [
        f"- `course-gpt2` (default): {f['n_layer']} layers, {f['n_head']} heads, width {f['d_model']}, "
        f"vocabulary {f['vocab']}, context {f['n_ctx']}, {f['params'] / 1e6:.2f} M parameters, trained on a "
        "synthetic curriculum whose IOI part is a compositional grammar with whole sentence families held out "
        "(see the card). On held-out data (`python -m course.training.evaluate`, floors and data in "
        "`course/assets/course-gpt2/MODEL_CARD.md`): previous-token head "
        f"{fig['prev_token_score']:.3f} ({f['heads']['prev_token_head']}), induction head "
        f"{fig['induction_head_score']:.3f} ({f['heads']['induction_head']}), facts in a held-out phrasing "
        f"{fig['fact_accuracy']:.3f}, two-digit addition {fig['addition_accuracy']:.3f}. IOI on the held-out "
        f"test families: IO above S {fig['ioi_accuracy']:.3f} (mean logit difference {fig['ioi_logit_diff']:.2f}), "
        f"IO the top-scoring name {fig['ioi_io_top_name']:.3f}, IO the top next token "
        f"{fig['ioi_io_top_token']:.3f} (the model ranks IO above S more often than it predicts IO); "
        f"with names never in IOI, IO above S "
        f"{fig['ioi_accuracy_unseen_names']:.3f}.",
    ]
    if final:
        lines.append(f"  On the final families, measured once for the shipped model only: IO above S "
                     f"{final['ioi_accuracy']:.3f}, {final['ioi_accuracy_unseen_names']:.3f} with names never in IOI.")
    if circuit:
        lines.append(f"  Its IOI circuit (`python -m course.circuits.ioi`, heads named on the validation families, "
                     f"measured on the test families): {_circuit_text(circuit)}")
    minutes = f["training"].get("wall_seconds")
    lines.append("  Retrain it from its seed with `python -m course.training.train --out DIR`: the defaults are its "
                 "settings" + (f" ({minutes / 60:.0f} minutes on one CPU thread when it was trained)." if minutes else "."))
    return "\n".join(lines)


def book_block(f: dict) -> str:
    return (f"The model is small enough for a laptop: {f['n_layer']} layers, {f['n_head']} heads per layer, a "
            f"residual\nstream of width {f['d_model']} and a vocabulary of {f['vocab']} tokens "
            f"({f['params'] / 1e6:.2f} M parameters), trained by this course\non a synthetic curriculum of stories, "
            "invented facts, sums and repeated token sequences. Its model card\nlists what was measured in it, "
            "and where.")


PAGES = {ROOT / "README.md": readme_block, ROOT / "book" / "intro.md": book_block}


def render(text: str, block: str, page: Path, start: str = START, end: str = END) -> str:
    """``text`` with the block between the markers ``start`` and ``end`` replaced by ``block``."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise MissingMarkers(f"{page}: put the two lines {start!r} and {end!r} where the generated block goes.")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{block}\n{end}{tail}"


def update(check: bool = False, model_dir: Path = MODEL) -> list[Path]:
    """The pages whose block is stale; rewritten unless ``check``."""
    facts = model_facts(model_dir)
    stale = []
    for page, make in PAGES.items():
        text = page.read_text()
        new = render(text, make(facts), page)
        if new != text:
            stale.append(page)
            if not check:
                page.write_text(new)
    return stale
