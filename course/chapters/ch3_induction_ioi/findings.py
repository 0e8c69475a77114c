"""What chapter 3 states about the course model, computed from the model itself.

Each function returns the numbers the chapter prints and the tests assert; none is typed in.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from course.circuits import composition_scores
from course.circuits import detector_scores, induction_scores

INDUCTION_THRESHOLD = 0.4      # a head with an induction (or previous-token) score at least this is named one
FORMED_THRESHOLD = 0.4         # the training step where the best induction score first reaches this


def _name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@torch.no_grad()
def repeat_losses(model, tokens, seq_len: int) -> dict:
    """Per-position mean loss on ``tokens`` (BOS, a sequence, the same again) and the two halves'
    means (predictions of tokens 2 … seq_len, and seq_len + 2 … 2 seq_len)."""
    tokens = tokens.to(model.device)
    logprobs = model(tokens).log_softmax(-1)[:, :-1]
    nll = -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]                  # [batch, 2 seq_len]
    return {"per_position": nll.mean(0).cpu(), "first": float(nll[:, 1:seq_len].mean()),
            "second": float(nll[:, seq_len + 1:].mean())}


def _heads_at_least(scores, threshold) -> list[str]:
    return [_name(l, h) for l, h in (scores >= threshold).nonzero().tolist()]


@torch.no_grad()
def induction_summary(model, cache, seq_len: int) -> dict:
    """Every head's induction score (``course.circuits.detectors.induction_scores``), the induction heads (score
    ≥ 0.4) and the previous-token heads (chapter 2's detector on the first half, where nothing
    repeats yet). ``cache``: the patterns of a sequence repeated after BOS."""
    induction = torch.stack([induction_scores(cache["pattern", l], seq_len) for l in range(model.cfg.n_layers)])
    previous = torch.stack([detector_scores(cache["pattern", l][:, :, :seq_len + 1, :seq_len + 1])[0]
                            for l in range(model.cfg.n_layers)]).cpu()
    induction = induction.cpu()
    best = divmod(int(induction.argmax()), model.cfg.n_heads)
    return {"induction": induction, "previous": previous,
            "strongest_induction_head": _name(*best),
            "induction_heads": _heads_at_least(induction, INDUCTION_THRESHOLD) or [_name(*best)],
            "previous_heads": _heads_at_least(previous, INDUCTION_THRESHOLD)
            or [_name(*divmod(int(previous.argmax()), model.cfg.n_heads))]}


def _parse(name: str) -> tuple[int, int]:
    layer, head = name[1:].split("H")
    return int(layer), int(head)


@torch.no_grad()
def composition_summary(model, ind: dict, n_random: int = 100, seed: int = 0) -> dict:
    """Q-, K- and V-composition of every head with every head (``[L*H, L*H]``, 0 where the
    first is not in an earlier layer), a random baseline, and each previous-token → induction
    pair's scores with their rank among all pairs of heads in different layers."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    W_OV = (model.W_V @ model.W_O).reshape(L * H, model.cfg.d_model, model.cfg.d_model)
    W_QK = (model.W_Q @ model.W_K.transpose(-1, -2)).reshape(L * H, model.cfg.d_model, model.cfg.d_model)
    layer = torch.arange(L).repeat_interleave(H)
    earlier = layer[:, None] < layer[None, :]
    scores = {"Q": composition_scores(W_OV, W_QK), "K": composition_scores(W_OV, W_QK.transpose(-1, -2)),
              "V": composition_scores(W_OV, W_OV)}
    scores = {k: torch.where(earlier, v.cpu(), torch.zeros(())) for k, v in scores.items()}
    g = torch.Generator().manual_seed(seed)
    d, dh = model.cfg.d_model, model.cfg.d_head
    rnd = lambda: torch.randn(d, dh, generator=g) @ torch.randn(dh, d, generator=g)   # noqa: E731
    baseline = sum(float(composition_scores(rnd()[None], rnd()[None])) for _ in range(n_random)) / n_random
    pairs, n_pairs = [], int(earlier.sum())
    for prev in ind["previous_heads"]:
        for induct in ind["induction_heads"]:
            (lp, hp), (li, hi) = _parse(prev), _parse(induct)
            if lp >= li:
                continue
            a, b = lp * H + hp, li * H + hi
            row = {"prev": prev, "induction": induct, "n_pairs": n_pairs}
            for k, v in scores.items():
                row[k] = float(v[a, b])
                row[k + "_rank"] = int((v[earlier] > v[a, b]).sum()) + 1
            # Per pair: the previous-token head against every other head that could feed this
            # induction head's keys, and this induction head's K-composition with random
            # rank-d_head writers (mean and 95th percentile).
            column = scores["K"][:, b][earlier[:, b]]
            row["K_rank_among_earlier"] = int((column > row["K"]).sum()) + 1
            row["n_earlier"] = int(earlier[:, b].sum())
            null = torch.tensor([float(composition_scores(rnd()[None], W_QK[b].transpose(-1, -2)[None].cpu()))
                                 for _ in range(n_random)])
            row["K_random_mean"], row["K_random_high"] = float(null.mean()), float(null.quantile(0.95))
            pairs.append(row)
    best = [max((r for r in pairs if r["induction"] == i), key=lambda r: r["K"])
            for i in dict.fromkeys(r["induction"] for r in pairs)]
    # Stands out: above twice the baseline, and above the same pair's Q- and V-composition.
    composing = [r["induction"] for r in best if r["K"] > 2 * baseline and r["K"] > max(r["Q"], r["V"])]
    # The strongest induction head is the one the chapter follows; later ones may read the
    # earlier induction heads instead of a previous-token head (their K-composition is then low).
    top = ind["strongest_induction_head"]
    singled = [r["induction"] for r in best if r["K_rank_among_earlier"] == 1 and r["K"] > r["K_random_high"]]
    return {"scores": scores, "baseline": baseline, "pairs": pairs, "best_pairs": best,
            "k_composing": composing, "top_induction_head": top, "k_stands_out": top in composing,
            "singled_out": singled, "labels": [f"L{l}H{h}" for l in range(L) for h in range(H)]}


def composition_report(comp: dict) -> list[str]:
    """What chapter 3 concludes from :func:`composition_summary`, pair by pair."""
    lines = []
    for r in comp["best_pairs"]:
        beyond = r["K"] > r["K_random_high"]
        lines.append(f"{r['prev']} -> {r['induction']}: K {r['K']:.3f}, rank {r['K_rank_among_earlier']} of the "
                     f"{r['n_earlier']} earlier heads for this induction head; random writers {r['K_random_mean']:.3f} "
                     f"(95% below {r['K_random_high']:.3f}): "
                     + ("above chance and the top writer into its keys" if beyond and r["K_rank_among_earlier"] == 1
                        else "above chance, but other heads compose more" if beyond else "not above chance"))
    top = comp["top_induction_head"]
    if top in comp["singled_out"]:
        lines.append(f"so K-composition singles out the previous-token head for the strongest induction head, {top}")
    else:
        lines.append(f"so K-composition does not single out a previous-token head for the strongest induction head, "
                     f"{top}: weights alone do not show this circuit here; the ablations below test it by effect")
    return lines


@torch.no_grad()
def head_ablation_losses(model, tokens, seq_len: int, mean_z: list | None = None, start: int | None = None) -> torch.Tensor:
    """``[layer, head]`` loss on the repeat (predictions at seq_len + 1 … 2 seq_len − 1, or from
    ``start`` on) with each head's z replaced by zeros or by ``mean_z[layer]`` ``[pos, head, d_head]``,
    through :func:`course.patching.patch_heads`."""
    tokens = tokens.to(model.device)
    start = seq_len + 1 if start is None else start
    from course.patching import patch_heads

    batch, n_pos = tokens.shape
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        source = (torch.zeros(batch, n_pos, model.cfg.n_heads, model.cfg.d_head, device=tokens.device)
                  if mean_z is None else mean_z[layer].expand(batch, -1, -1, -1))
        for head in range(model.cfg.n_heads):
            logits = patch_heads(model, tokens, [(layer, head)], {layer: source})[:, start:-1]
            out[layer, head] = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, start + 1:].flatten())
    return out


@torch.no_grad()
def ablation_summary(model, tokens, seq_len: int, ind: dict, mean_z: list, top: int = 4) -> dict:
    """Repeated-half loss clean and with each head zero- and mean-ablated, the heads whose
    ablation raises it most, and whether the induction and previous-token heads are among them."""
    tokens = tokens.to(model.device)
    logprobs = model(tokens).log_softmax(-1)[:, seq_len + 1:-1]
    clean = float(-logprobs.gather(-1, tokens[:, seq_len + 2:, None]).mean())
    out = {"clean": clean, "zero": head_ablation_losses(model, tokens, seq_len),
           "mean": head_ablation_losses(model, tokens, seq_len, mean_z)}
    circuit = set(ind["induction_heads"]) | set(ind["previous_heads"])
    matters = True
    for kind in ("zero", "mean"):
        rise = out[kind] - clean
        order = rise.flatten().argsort(descending=True)[:max(top, len(circuit))]
        named = [_name(*divmod(int(i), model.cfg.n_heads)) for i in order]
        out[f"{kind}_top"] = [(n, float(rise.flatten()[i])) for n, i in zip(named, order)][:top]
        matters &= any(h in named[:len(circuit)] for h in circuit)
    out["circuit_matters"] = bool(matters)
    # Redundancy: every induction head zero-ablated at once, against the sum of their single effects.
    from course.patching import patch_heads

    heads = [_parse(h) for h in ind["induction_heads"]]
    batch, n_pos = tokens.shape
    zeros = {layer: torch.zeros(batch, n_pos, model.cfg.n_heads, model.cfg.d_head, device=tokens.device)
             for layer, _ in heads}
    logits = patch_heads(model, tokens, heads, zeros)[:, seq_len + 1:-1]
    together = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, seq_len + 2:].flatten()))
    singles = {h: float(out["zero"][_parse(h)] - clean) for h in ind["induction_heads"]}
    out.update(induction_singles=singles, induction_together=together - clean,
               induction_sum_of_singles=sum(singles.values()))
    return out


def ablation_report(abl: dict, threshold: float = 0.05) -> list[str]:
    """What chapter 3 concludes from :func:`ablation_summary` about the induction heads."""
    singles = abl["induction_singles"]
    matter = [h for h, d in singles.items() if d > threshold]
    quiet = [h for h in singles if h not in matter]
    lines = [f"induction heads whose own zero ablation raises the repeat loss by more than {threshold}: "
             + (", ".join(f"{h} (+{singles[h]:.2f})" for h in matter) or "none")
             + (f"; no effect on their own: {', '.join(quiet)}" if quiet else "")]
    together, total = abl["induction_together"], abl["induction_sum_of_singles"]
    lines.append(f"all {len(singles)} ablated together: +{together:.2f}, against +{total:.2f} for the sum of their "
                 "single ablations")
    if together > 1.5 * total + threshold:
        lines.append("so they back each other up: a head whose removal alone costs nothing is still doing the "
                     "work, and the others cover for it (redundancy; in GPT-2 small, backup heads)")
    elif together < 0.67 * total:
        lines.append("so their effects overlap: removing one already removes much of what the others add")
    else:
        lines.append("so their effects add up: no sign of backup between them")
    return lines


def training_log(path: Path | None = None) -> list[dict]:
    from course.models.loading import BUNDLED

    path = path or BUNDLED["course-gpt2"] / "training_log.jsonl"
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def shipped_weights() -> str:
    """Which weights the course model ships ("raw", or an average such as "ema0.999"), from its
    training config: the series of the training log that describes the model in front of you."""
    from course.models.loading import BUNDLED

    return json.loads((BUNDLED["course-gpt2"] / "training_config.json").read_text()).get("selected_weights", "raw")


def induction_formation(records: list[dict] | None = None, threshold: float = FORMED_THRESHOLD,
                        weights: str | None = None) -> dict:
    """Training loss and the evaluations' induction score / repeat loss ratio by step, for one series
    of evaluated weights (``weights``: the shipped ones by default; a log that evaluated raw and
    averaged weights at every step holds both), and the first evaluated step of that series where the
    best induction score reaches ``threshold``. ``other`` holds the other series' evaluations, to be
    drawn apart."""
    shipped = records is None
    records = records if records is not None else training_log()
    losses = [r for r in records if "loss" in r and "tokens_seen" not in r]
    all_evals = [r for r in records if "tokens_seen" in r]
    kinds = list(dict.fromkeys(r.get("weights", "raw") for r in all_evals))
    if weights is None:
        weights = shipped_weights() if shipped else (kinds[0] if kinds else "raw")
        weights = weights if weights in kinds else (kinds[0] if kinds else "raw")
    evals = [r for r in all_evals if r.get("weights", "raw") == weights]
    steps = [r["step"] for r in evals]
    score = [r["induction_head_score"] for r in evals]
    i = next((i for i, s in enumerate(score) if s >= threshold), None)
    if i is None:
        raise ValueError(f"the training log never reaches an induction score of {threshold} ({weights} weights)")
    before = max(i - 1, 0)
    other = {k: {"eval_steps": [r["step"] for r in all_evals if r.get("weights", "raw") == k],
                 "induction_score": [r["induction_head_score"] for r in all_evals if r.get("weights", "raw") == k]}
             for k in kinds if k != weights}
    return {"loss_steps": [r["step"] for r in losses], "loss": [r["loss"] for r in losses], "eval_steps": steps,
            "induction_score": score, "loss_ratio": [r["induction_loss_ratio"] for r in evals],
            "threshold": threshold, "formed_at": steps[i], "step_before": steps[before],
            "score_before": score[before], "ratio_before": evals[before]["induction_loss_ratio"],
            "ratio_after": evals[i]["induction_loss_ratio"], "weights": weights, "other": other}


def patching_summary(exact: dict, labels: list[str], top: int = 3, threshold: float = 0.5) -> dict:
    """Where restoring the clean residual stream restores at least ``threshold`` of the metric
    (per layer, the positions), and the heads whose patch restores most."""
    resid = exact["resid_pre"]
    where = {}
    for layer in range(resid.shape[0]):
        pos = [labels[p] for p in (resid[layer] >= threshold).nonzero()[:, 0].tolist()]
        where[f"layer {layer}"] = pos
    heads = exact["heads"]
    order = heads.flatten().argsort(descending=True)[:top]
    top_heads = [(_name(*divmod(int(i), heads.shape[1])), float(heads.flatten()[i])) for i in order]
    return {"resid_positions": where, "top_heads": top_heads}


def attribution_agreement(exact: dict, approx: dict, corrupt_metric: float) -> dict:
    """Attribution patching against exact patching, per kind: correlation, the largest error and where."""
    by_kind, estimate = {}, {}
    for what in exact:
        e, a = exact[what].float(), approx[what].float().cpu() + corrupt_metric
        estimate[what] = a
        err = (a - e).abs()
        i = int(err.argmax())
        where = divmod(i, e.shape[1])
        by_kind[what] = {"corr": float(torch.corrcoef(torch.stack([e.flatten(), a.flatten()]))[0, 1]),
                         "max_error": float(err.max()), "worst": (_name(*where) if what == "heads"
                                                                 else f"layer {where[0]}, position {where[1]}"),
                         "worst_exact": float(e.flatten()[i]), "worst_estimate": float(a.flatten()[i])}
    worst = max(by_kind, key=lambda k: by_kind[k]["max_error"])
    return {"by_kind": by_kind, "estimate": estimate, "worst_kind": worst, "worst_error": by_kind[worst]["max_error"]}


@torch.no_grad()
def pattern_change(model, clean, corrupt) -> dict:
    """How far the attention patterns move between two runs of prompts with the same positions:
    the mean absolute change of the attention weights (per query, summed over keys and halved, so
    0 is no change and 1 a complete move), over heads and queries, and the head that moves most."""
    names = lambda n: n.endswith("hook_pattern")                                       # noqa: E731
    _, a = model.run_with_cache(clean, names_filter=names)
    _, b = model.run_with_cache(corrupt, names_filter=names)
    moved = torch.stack([(a["pattern", l] - b["pattern", l]).abs().sum(-1).mean((0, 2)) / 2
                         for l in range(model.cfg.n_layers)]).cpu()                   # [layer, head]
    worst = divmod(int(moved.argmax()), model.cfg.n_heads)
    return {"mean": float(moved.mean()), "max": float(moved.max()), "worst_head": _name(*worst)}


def attribution_report(agree: dict, moved: dict) -> list[str]:
    """Why attribution patching agrees (or not) with the exact patching here, from the patterns."""
    corr = agree["by_kind"]["heads"]["corr"]
    lines = [f"between the clean and ABC runs the attention patterns move by {moved['mean']:.3f} on average "
             f"(0: no change, 1: all weight moved), at most {moved['max']:.3f} ({moved['worst_head']})"]
    if corr > 0.99 and moved["mean"] < 0.1:
        lines.append("so the path from the ABC run to the clean one is close to linear: the attention weights, the "
                     "main non-linearity attribution patching linearises, hardly change, and the first-order "
                     f"estimate agrees (head correlation {corr:.3f}). It would fail where a patch moves attention "
                     "a lot, or where the metric saturates (a probability near 0 or 1)")
    else:
        lines.append(f"head correlation {corr:.3f}: the linear estimate is only a first guess here; check the "
                     "heads it ranks high with exact patching")
    lines.append(f"where it errs most: {agree['worst_kind']}, by {agree['worst_error']:.2f}")
    return lines


@torch.no_grad()
def _sender_label(sender) -> str:
    return sender if isinstance(sender, str) else _name(*sender)


def path_patching_sweep(model, data, receivers: list[str], rows=None) -> dict:
    """Path patching from every sender into the receiver where it has most to show.

    For each candidate in ``receivers`` (head names) and each input (q, k, v): the share of the
    logit difference removed when *every* component below it (embeddings, heads, MLPs) sends its
    ABC change into that input only. The receiver and input with the largest share are chosen;
    for that receiver, each sender alone, into each input. On the prompts ``rows`` of ``data``
    (a boolean mask; all when None)."""
    from course.circuits.ioi import runs
    from course.patching import path_patch
    from course.patching.paths import sender_layer, sender_names

    r = runs(model, data if rows is None else subset(data, rows))
    every = sender_names(model)
    totals = {}
    for name in receivers:
        layer, head = _parse(name)
        below = [s for s in every if sender_layer(s) < layer]
        totals[name] = {x: r.removed(path_patch(model, r.data.clean, r.clean_cache, r.abc_cache, below,
                                                [(layer, head)], x)) for x in ("q", "k", "v")}
    receiver, into = max(((n, x) for n in totals for x in totals[n]), key=lambda nx: totals[nx[0]][nx[1]])
    layer, head = _parse(receiver)
    senders = [s for s in every if sender_layer(s) < layer]
    removed = {x: torch.tensor([r.removed(path_patch(model, r.data.clean, r.clean_cache, r.abc_cache, [s],
                                                     [(layer, head)], x)) for s in senders]) for x in ("q", "k", "v")}
    top = {x: (_sender_label(senders[int(v.argmax())]), float(v.max())) for x, v in removed.items()}
    return {"receiver": receiver, "input": into, "totals": totals, "senders": [_sender_label(s) for s in senders],
            "removed": removed, "top": top}


NULL_PATH = 0.05      # below this share of the logit difference a path is called empty


def path_patching_report(paths: dict) -> list[str]:
    """What the sweep found, what an empty path rules in and out, from its numbers."""
    rec, into, totals = paths["receiver"], paths["input"], paths["totals"]
    tried = "; ".join(f"{n}: " + ", ".join(f"{x} {v:.2f}" for x, v in t.items()) for n, t in totals.items())
    lines = [f"every sender at once, into each input of each candidate (share of the logit difference removed): "
             f"{tried}",
             f"receiver chosen: {rec}, whose {into} carries the most ({totals[rec][into]:.2f})"]
    for x in ("q", "k", "v"):
        name, value = paths["top"][x]
        together = totals[rec][x]
        alone = float(paths["removed"][x].sum())
        if together < NULL_PATH:
            lines.append(
                f"into {rec}'s {x}: every sender together removes {together:.2f} (under {NULL_PATH}): the ABC "
                f"change does not reach the logits by changing {rec}'s {x}. That rules out this direct path "
                f"only: the same senders may still act through other heads, or through {rec}'s other inputs.")
        else:
            lines.append(
                f"into {rec}'s {x}: every sender together removes {together:.2f}; the largest single sender is "
                f"{name} ({value:.2f}); the single senders sum to {alone:.2f}"
                + (" (close to the joint effect: the paths add up)" if abs(alone - together) <= 0.1 * abs(together)
                   else " (not the joint effect: the senders' changes interact through the layer norm or "
                        "cancel)"))
    t = totals[rec]
    if t["q"] < NULL_PATH and t["k"] < NULL_PATH and t["v"] >= NULL_PATH:
        lines.append(f"so on the ABC prompts {rec} attends where it did (its queries and keys barely change) but "
                     f"reads a different token there (its values change): what it moves depends on *which* "
                     f"name sits where it looks, not on how it finds the place")
    return lines


def subset(data, rows):
    """The prompts of ``data`` (an IOIDataset) selected by the boolean mask ``rows``."""
    from course.data.ioi_dataset import IOIDataset

    picked = [p for p, keep in zip(data.prompts, rows.tolist()) if keep]
    return IOIDataset(picked, **{k: v[rows] for k, v in vars(data).items() if k != "prompts"})


GPT2_SMALL = {   # Wang et al. 2022 (GPT-2 small); what each class does there, for the comparison
    "name_movers": "name movers (9.6, 9.9, 10.0) attend from the end to IO and copy it",
    "s_inhibition": "S-inhibition heads (7.3, 7.9, 8.6, 8.10) tell the name movers' queries to avoid S",
    "subject_suppression": "a class of its own, the negative name movers (10.7, 11.10): they attend to IO and write "
                           "against it, lowering the logit difference (later read as copy suppression); the course "
                           "model's subject-suppression heads instead attend to S and push S down, raising it",
    "duplicate_token": "duplicate-token heads (0.1, 0.10, 3.0) attend from S2 to S1",
    "induction": "induction heads (5.5, 6.9) attend from S2 to S1 + 1",
}


def circuit_comparison(report) -> list[str]:
    """One sentence per class: GPT-2 small's, then what the course model has (read from ``report``)."""
    fmt = lambda hs: ", ".join(_name(*h) for h in hs)                    # noqa: E731
    f = report.figures
    lines = []
    for cls, gpt2 in GPT2_SMALL.items():
        heads = getattr(report, cls)
        here = (f"here {fmt(heads)}" if report.passes(cls) else f"here none pass; candidates {fmt(heads)}"
                if heads else "here none was found")
        if cls == "name_movers" and heads:
            here += (f", attending to IO {f['name_mover_attention_to_io']:.2f} on average and writing "
                     f"{f['name_mover_share']:.1%} of the logit difference directly")
            if not report.passes(cls):
                here += (" on the test families: named on the validation families, they fall short of the test "
                         "(together at least half of the logit difference), so they are not name movers")
        if cls == "subject_suppression" and heads:
            here += f", writing {f['subject_suppression_share']:.0%} of the logit difference by pushing S down"
        if cls == "s_inhibition" and heads:
            here += f"; patching them into the name movers' queries removes {f['s_inhibition_removed']:.0%}"
            if not report.passes(cls):
                here += " (the test asks for 30%)"
        if cls in ("duplicate_token", "induction") and heads:
            here += f"; with the other S2 detectors they send {f['duplicate_removed']:.0%} through keys and values"
            if not report.passes(cls):
                here += " (the test asks for 15%)"
        lines.append(f"GPT-2 small: {gpt2}; {here}.")
    lines.append(f"Faithfulness: mean-ablating every head outside the circuit keeps {f['outside_ablated_kept']:.0%} "
                 f"of the logit difference (Wang et al.'s circuit keeps 87% in GPT-2 small); ablating the circuit "
                 f"leaves {f['circuit_ablated_left']:.0%}.")
    return lines


CLASS_COLOURS = {"name_movers": "tab:blue", "s_inhibition": "tab:orange", "subject_suppression": "tab:red",
                 "duplicate_token": "tab:green", "induction": "tab:purple"}


def draw_circuit(report, n_layers: int):
    """The circuit's classes as a graph: one row per layer, one node per head of a class that passes
    its test, arrows along the classes' roles (duplicate/induction → S2 readers → logits; name
    movers → logits). Candidates that fail their test are listed in the legend, not drawn."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1 + 0.9 * n_layers))
    where = {}
    drawn = {cls: list(getattr(report, cls)) if report.passes(cls) else [] for cls in CLASS_COLOURS}
    for cls, colour in CLASS_COLOURS.items():
        for layer, head in drawn[cls]:
            if (layer, head) in where:
                continue
            x = sum(1 for (l, _) in where if l == layer)
            where[(layer, head)] = (x, layer)
            ax.scatter([x], [layer], s=900, color=colour, zorder=2)
            ax.annotate(_name(layer, head), (x, layer), ha="center", va="center", color="white", fontsize=8, zorder=3)
    width = max([x for x, _ in where.values()], default=0) + 1
    ax.scatter([width / 2], [n_layers], s=1200, color="grey", marker="s")
    ax.annotate("logits", (width / 2, n_layers), ha="center", va="center", color="white", fontsize=8)

    def arrow(a, b):
        ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8,
                                                         "connectionstyle": "arc3,rad=0.2"}, zorder=1)

    readers = sorted(set(drawn["s_inhibition"] + drawn["subject_suppression"]))
    for h in drawn["name_movers"] + drawn["subject_suppression"]:
        arrow(where[h], (width / 2, n_layers))
    for h in drawn["s_inhibition"]:
        for nm in drawn["name_movers"]:
            arrow(where[h], where[nm])
    for h in drawn["duplicate_token"] + drawn["induction"]:
        for r in readers:
            arrow(where[h], where[r])
    for cls, colour in CLASS_COLOURS.items():
        note = ("" if drawn[cls] else
                f" (candidates {', '.join(_name(*h) for h in getattr(report, cls))} fail its test: not drawn)"
                if getattr(report, cls) else " (none)")
        ax.scatter([], [], color=colour, label=cls.replace("_", " ") + note)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_yticks(range(n_layers + 1), [f"layer {l}" for l in range(n_layers)] + ["out"])
    ax.set_xticks([])
    ax.set_xlim(-1, width + 0.5)
    ax.set_ylim(-0.7, n_layers + 0.7)
    ax.set_title("the IOI circuit's classes in the course model")
    return fig


def patching_speedup(model, corrupt, clean_cache, metric, repeats: int = 3, positions=None) -> dict:
    """Seconds for the batched head sweep (:func:`course.patching.patch_sweep`, told the ``positions``
    the metric reads) and for a loop of single-head patches (:func:`course.patching.patch_heads`: one
    forward pass per head, as a student writes it), timed back to back ``repeats`` times: the medians,
    and the median of the per-repeat ratios (``speedup``). Both give the same map (``max_difference``)."""
    from course.patching import patch_heads, patch_sweep

    L, H = model.cfg.n_layers, model.cfg.n_heads
    source = {l: clean_cache["z", l] for l in range(L)}

    def loop():
        return torch.tensor([[float(metric(patch_heads(model, corrupt, [(l, h)], source))) for h in range(H)]
                             for l in range(L)])

    def batched():
        return patch_sweep(model, corrupt, clean_cache, metric, "heads", positions=positions)

    times, results = {"batched": [], "loop": []}, {}
    with torch.no_grad():
        for _ in range(repeats):
            for name, fn in (("batched", batched), ("loop", loop)):
                t = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t)
    ratios = [lo / ba for lo, ba in zip(times["loop"], times["batched"])]
    return {"batched": statistics.median(times["batched"]), "loop": statistics.median(times["loop"]),
            "speedup": statistics.median(ratios), "ratios": ratios,
            "max_difference": float((results["loop"] - results["batched"]).abs().max())}


@torch.no_grad()
def prediction_rates(model, data) -> dict:
    """What the logit difference leaves out, on ``data`` (an :class:`IOIDataset`): how often IO is the
    model's top next token, its mean probability, how often it is the top-scoring of all the course's
    single-token names, and how often IO scores above S (what the logit difference measures)."""
    from course.data.vocabulary import single_token_names

    logits = model(data.clean)[torch.arange(len(data)), data.end_pos]                  # [prompt, vocab]
    names = torch.tensor([model.to_single_token(" " + n) for n in single_token_names(model.tokenizer)])
    names = names.to(logits.device)
    top_name = names[logits[:, names].argmax(-1)]
    io, s = data.io_tok.to(logits.device), data.s_tok.to(logits.device)
    rows = torch.arange(len(data), device=logits.device)
    return {"io_above_s": float((logits[rows, io] > logits[rows, s]).float().mean()),
            "io_top_token": float((logits.argmax(-1) == io).float().mean()),
            "p_io": float(logits.softmax(-1)[rows, io].mean()),
            "io_top_name": float((top_name == io).float().mean()),
            "n_names": len(names), "n_prompts": len(data)}


def prediction_report(rates: dict) -> list[str]:
    """What chapter 3 prints beside the logit difference, with what each number can show."""
    lines = [f"IO scores above S in {rates['io_above_s']:.0%} of the {rates['n_prompts']} prompts (what the logit "
             f"difference measures); IO is the top next token in {rates['io_top_token']:.0%} (mean p(IO) "
             f"{rates['p_io']:.2f}) and the top-scoring of the course's {rates['n_names']} names in "
             f"{rates['io_top_name']:.0%}."]
    gap = rates["io_above_s"] - rates["io_top_token"]
    if gap > 0.2:
        lines.append(f"So the logit difference can be large while the model predicts something else: in "
                     f"{gap:.0%} of prompts it ranks IO above S but does not predict IO. Patching with the logit "
                     f"difference finds what separates IO from S, not what makes IO the answer.")
    else:
        lines.append("Here ranking IO above S and predicting IO mostly go together, so the logit difference "
                     "tracks the prediction.")
    return lines


REPETITION_RATIO = 0.5    # a head reads repetition when ABC prompts keep at most half its attention to S2
POSITION_RATIO = 0.8      # ... and position when they keep at least this much


def _attention_to(patterns, rows_from, rows_to) -> torch.Tensor:
    rows = torch.arange(len(rows_from), device=rows_from.device)
    return torch.stack([p[rows, :, rows_from, rows_to].mean(0) for p in patterns]).cpu()     # [layer, head]


@torch.no_grad()
def s2_mechanism(model, data, top: int = 3) -> dict:
    """For the ``top`` heads attending most from the end to S2 on ``data``'s clean prompts: that
    attention on clean and on ABC prompts (where nothing repeats) and its ratio, with a verdict per
    head: "repetition" (ratio <= REPETITION_RATIO), "position" (>= POSITION_RATIO) or "both"."""
    names = lambda n: n.endswith("hook_pattern")                                     # noqa: E731
    end, s2 = data.end_pos.to(model.device), data.s2_pos.to(model.device)
    out = {}
    for run in ("clean", "abc"):
        _, cache = model.run_with_cache(getattr(data, run).to(model.device), names_filter=names)
        out[run] = _attention_to([cache["pattern", l] for l in range(model.cfg.n_layers)], end, s2)
    order = out["clean"].flatten().argsort(descending=True)[:top].tolist()
    heads = []
    for i in order:
        layer, head = divmod(i, model.cfg.n_heads)
        clean, abc = float(out["clean"][layer, head]), float(out["abc"][layer, head])
        ratio = abc / clean if clean > 0 else float("nan")
        verdict = ("repetition" if ratio <= REPETITION_RATIO else "position" if ratio >= POSITION_RATIO
                   else "both")
        heads.append({"head": _name(layer, head), "clean": clean, "abc": abc, "ratio": ratio, "verdict": verdict})
    return {"heads": heads, "clean": out["clean"], "abc": out["abc"], "n_prompts": len(data)}


def s2_mechanism_report(m: dict) -> list[str]:
    """What chapter 3 prints for :func:`s2_mechanism`."""
    lines = [f"attention from the end to S2, {m['n_prompts']} held-out prompts (clean -> ABC, where nothing repeats):"]
    for h in m["heads"]:
        lines.append(f"  {h['head']}: {h['clean']:.2f} -> {h['abc']:.2f} (ABC keeps {h['ratio']:.0%}): "
                     + {"repetition": "it finds S2 because the name is repeated",
                        "position": "it finds S2 by position, repeated or not",
                        "both": "in between: part position, part repetition"}[h["verdict"]])
    verdicts = {h["verdict"] for h in m["heads"]}
    if verdicts == {"position"}:
        lines.append("so this model finds S2 by position: unlike GPT-2 small's S-inhibition heads, its heads "
                     "that read S2 do not need the repetition (the last name before the end is always S2 here)")
    elif verdicts == {"repetition"}:
        lines.append("so this model finds S2 by repetition, as GPT-2 small's S-inhibition heads do")
    else:
        lines.append("so the heads that read S2 differ: see each verdict above")
    return lines
