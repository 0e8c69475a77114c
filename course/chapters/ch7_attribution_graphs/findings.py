"""What chapter 7 states about the course model's addition graph, computed (never typed): the
graph of "calc: 36 + 59 = 9" -> "5", its size before and after pruning, the pathways (kept
features' influence grouped by layer and by the prompt position they sit at), what each top
feature responds to across all sums, and an intervention in the real model."""

from __future__ import annotations

from collections import defaultdict

import torch

from course.attribution import LocalReplacement, attribute, prune
from course.attribution.pruning import error_share
from course.attribution.transcoders import input_site, output_site
from course.saes import read_sites

ROLES = ("a tens", "a ones", "b tens", "b ones")


def addition_prompt(a: int, b: int, digit: str = "ones") -> str:
    """The prompt whose next token is the sum's ``digit`` ("tens" or "ones"; sums below 100)."""
    s = a + b
    if s >= 100:
        raise ValueError("two-digit sums only")
    return f"calc: {a} + {b} = " + ("" if digit == "tens" else str(s // 10))


def position_roles(model, prompt: str) -> list[str]:
    """A role per token of an addition prompt: the operands' digits, "=" and the answer so far."""
    toks = model.to_str_tokens(prompt)
    digits = [i for i, t in enumerate(toks) if t.strip().isdigit()]
    names = dict(zip(digits, ROLES + ("sum tens",)))
    return [names.get(i, "'=' " if t == " =" else ("last" if i == len(toks) - 1 else "context"))
            if i != len(toks) - 1 or i not in names else names[i] for i, t in enumerate(toks)]


def addition_graph(model, tcs, a: int = 36, b: int = 59, digit: str = "ones", node_threshold: float = 0.8,
                   edge_threshold: float = 0.98) -> dict:
    """The pruned graph of the addition prompt, with its replacement model and summary numbers."""
    return graph_for(model, tcs, addition_prompt(a, b, digit), node_threshold, edge_threshold)


def graph_for(model, tcs, prompt, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> dict:
    """Replacement model, graph (for the most likely next token) and pruned graph of ``prompt``
    (text or ``[1, pos]`` tokens)."""
    rep = LocalReplacement.build(model, tcs, prompt)
    graph = attribute(rep)
    pruned = prune(graph, node_threshold, edge_threshold)
    with torch.no_grad():
        exact = float((rep.forward()["logits"] - rep.logits).abs().max())
    prompt = prompt if isinstance(prompt, str) else model.to_string(rep.tokens[0, 1:])
    return {"prompt": prompt, "rep": rep, "graph": graph, "pruned": pruned, "stats": pruned.stats(),
            "error_share": error_share(graph), "max_logit_error": exact,
            "answer": model.to_string(graph.logit_tokens[:1]), "probability": float(graph.logit_probabilities[0])}


def pathways(model, found: dict) -> list[dict]:
    """Kept features' influence on the answer grouped by (layer, role of their position), largest
    first, with the share of the direct effect on the logit that is positive."""
    g, p = found["graph"], found["pruned"]
    roles = position_roles(model, found["prompt"])
    logit = g.slices()["logit"].start
    groups: dict = defaultdict(lambda: {"influence": 0.0, "features": [], "direct": 0.0})
    for n in p.nodes():
        if g.kind(n) != "feature":
            continue
        d = g.describe(n)
        key = (d["layer"], roles[d["pos"]])
        groups[key]["influence"] += float(p.influence[n])
        groups[key]["features"].append(n)
        groups[key]["direct"] += float(g.adjacency[logit, n])
    rows = [{"layer": k[0], "role": k[1], **v} for k, v in groups.items()]
    return sorted(rows, key=lambda r: -r["influence"])


@torch.no_grad()
def mlp_zeroing_drops(model, found: dict) -> dict[int, float]:
    """Every layer's drop in log P(answer) when that layer's MLP output is zeroed at every
    position, on the graph's prompt: ``{layer: nats}`` (positive: the MLP helps the answer)."""
    tokens = found["rep"].tokens
    answer = int(found["graph"].logit_tokens[0])
    clean = float(model(tokens)[0, -1].log_softmax(-1)[answer])
    out = {}
    for layer in range(model.cfg.n_layers):
        zeroed = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out",
                                                          lambda x, hook: torch.zeros_like(x))])
        out[layer] = clean - float(zeroed[0, -1].log_softmax(-1)[answer])
    return out


def layers_in_graph(found: dict) -> set[int]:
    """The layers with at least one feature in the pruned graph."""
    g = found["graph"]
    return {g.describe(n)["layer"] for n in found["pruned"].nodes() if g.kind(n) == "feature"}


def absent_layers(model, found: dict) -> dict[int, float]:
    """Layers with no feature in the pruned graph, each with :func:`mlp_zeroing_drops`' drop (a
    large drop would mean the graph's pruning or the transcoder hides a layer the model uses)."""
    kept = layers_in_graph(found)
    return {layer: d for layer, d in mlp_zeroing_drops(model, found).items() if layer not in kept}


BARELY_USED = 0.1   # a drop in log P(answer) below this, in nats, when a whole MLP is zeroed


def absent_layer_verdict(layer: int, drop: float, answer: str, kept_drops: dict[int, float] | None = None) -> str:
    """What chapter 7 prints about a layer with no feature in the graph, from :func:`absent_layers`'
    drop: whether the absence is the model's (it barely uses that MLP here) or the graph's.
    ``kept_drops``: the same drop for the layers the graph keeps, printed as the control."""
    control = ("" if not kept_drops else " (against " + ", ".join(
        f"{d:.3f} for layer {k}" for k, d in sorted(kept_drops.items())) + " in the graph)")
    return (f"layer {layer} has no feature in the graph; zeroing its MLP lowers log P({answer!r}) by {drop:.3f}"
            f"{control}: "
            + (f"the model barely uses that MLP here (|drop| below {BARELY_USED}), so its absence is the model's, "
               "not the graph's" if abs(drop) < BARELY_USED else
               f"the model does use it (|drop| at least {BARELY_USED}): the pruning or the transcoder hides it"))


@torch.no_grad()
def digit_profile(model, tcs, layer: int, feature: int, role: str, digit: str = "ones") -> torch.Tensor:
    """The feature's mean activation at ``role``'s position over every sum below 100, by the digit
    at that position (``[10]``): what the feature reads."""
    prompts = [(a, b) for a in range(10, 100) for b in range(10, 100) if a + b < 100]
    texts = [addition_prompt(a, b, digit) for a, b in prompts]
    pos = position_roles(model, texts[0]).index(role)
    tokens = model.to_tokens(texts)
    x = torch.cat([read_sites(model, tokens[i:i + 512], [input_site(layer)])[input_site(layer)][:, pos]
                   for i in range(0, len(tokens), 512)])
    acts = tcs[layer].encode(x)[:, feature]
    which = torch.tensor([int(model.to_string(tokens[i, pos])) for i in range(len(tokens))])
    return torch.stack([acts[which == d].mean() if (which == d).any() else torch.tensor(0.0) for d in range(10)])


@torch.no_grad()
def promoted_digits(model, tcs, layer: int, feature: int) -> list[tuple[str, float]]:
    """What a feature writes toward the digits, directly: its decoder row through the final layer
    norm's weight and the unembedding, on the ten digit tokens, minus their mean (a push toward
    every digit alike moves no choice between them). Sorted, largest first: ``[(digit, logit)]``."""
    w = tcs[layer].W_dec[feature] * model.ln_final_w
    ids = [model.to_single_token(str(d)) for d in range(10)]
    logits = w @ model.W_U[:, ids]
    logits = logits - logits.mean()
    return sorted(((str(d), float(v)) for d, v in enumerate(logits)), key=lambda dv: -dv[1])


def feature_reading(promotes: list[tuple[str, float]], answer_digit: str) -> str:
    """One line: the two digits a feature promotes most, and whether the answer's digit is one."""
    (d1, v1), (d2, v2) = promotes[:2]
    line = f"promotes '{d1}' ({v1:+.2f}) and '{d2}' ({v2:+.2f}) most among the digits"
    if answer_digit in (d1, d2):
        line += f": the answer's digit '{answer_digit}' is one of them (a 'the sum ends in {d1} or {d2}' feature)"
    return line


def _removal_hooks(found: dict, nodes: list[int], scale: float = 1.0) -> list:
    """Hooks on the MLP outputs that subtract ``scale`` x each feature's activation x its decoder
    row at its (layer, position): the features of ``nodes`` removed from the real model."""
    g, rep = found["graph"], found["rep"]
    writes: dict = defaultdict(list)
    for n in nodes:
        d = g.describe(n)
        writes[d["layer"]].append((d["pos"], rep.transcoders[d["layer"]].W_dec[d["feature"]] * d["activation"] * scale))

    def hook_for(items):
        def hook(x, hook):
            x = x.clone()
            for pos, w in items:
                x[:, pos] -= w
            return x
        return hook

    return [(output_site(layer), hook_for(items)) for layer, items in writes.items()]


@torch.no_grad()
def suppress_feature(model, found: dict, node: int, scale: float = 1.0) -> dict:
    """Subtract ``scale`` x the feature's activation x its decoder row from the real model's MLP
    output at its (layer, position), with everything downstream live (``actual``), and again with
    only the final layer norm's scale frozen at the prompt's (``actual_final_frozen``); compare the
    answer's (demeaned) logit with the graph's direct-effect prediction."""
    g, rep = found["graph"], found["rep"]
    tok = int(g.logit_tokens[0])
    hooks = _removal_hooks(found, [node], scale)
    before = model(rep.tokens)[0, -1]
    after = model.run_with_hooks(rep.tokens, fwd_hooks=hooks)[0, -1]
    clean_scale = rep.ln_final_scale[None]                     # [1, pos, 1]: the prompt's final-norm scale
    final_frozen = model.run_with_hooks(rep.tokens, fwd_hooks=hooks + [
        ("ln_final.hook_scale", lambda x, hook: clean_scale)])[0, -1]
    demeaned = lambda l: float(l[tok] - l.mean())
    logit = g.slices()["logit"].start
    return {"feature": g.label(node), "predicted_direct": -scale * float(g.adjacency[logit, node]),
            "actual": demeaned(after) - demeaned(before),
            "actual_final_frozen": demeaned(final_frozen) - demeaned(before),
            "p_before": float(before.softmax(-1)[tok]),
            "p_after": float(after.softmax(-1)[tok]), "top_after": model.to_string(after.argmax().reshape(1))}


def logit_decomposition(found: dict) -> dict[str, float]:
    """Where the answer's demeaned logit comes from in the graph: the constant (every bias, with
    every source removed) and the summed direct edges from each kind of source (features, error
    nodes, token embeddings). By completeness they add up to the logit (``"logit"``)."""
    g = found["graph"]
    s = g.slices()
    logit = s["logit"].start
    parts = {"constant": float(g.bias_values[logit])}
    parts.update({kind: float(g.adjacency[logit, s[kind]].sum()) for kind in ("feature", "error", "embedding")})
    return {**parts, "logit": float(g.target_values[logit])}


def total_effects(graph, target: int | None = None) -> torch.Tensor:
    """``[n_features]``: what removing each feature does to ``target`` (default: the first logit)
    in the local replacement model when the features downstream of it respond (linearly, each by
    the change of its pre-activation): minus the sum over every path of the products of edges,
    each edge from a feature divided by that feature's activation (an edge is activation x effect
    per unit)."""
    s = graph.slices()
    n_f = graph.n_features
    target = s["logit"].start if target is None else target
    J = graph.adjacency.double().clone()
    J[:, n_f:] = 0                                            # errors and embeddings stay as they are
    J[:, :n_f] /= graph.activation_values.double().clamp_min(1e-12)
    e = torch.zeros(graph.n_nodes, dtype=J.dtype)
    e[target] = 1.0
    per_unit = torch.linalg.solve((torch.eye(graph.n_nodes, dtype=J.dtype) - J).T, e)   # e (I - J)^-1
    return (-per_unit[:n_f] * graph.activation_values.double()).float()


def top_features(found: dict, n: int = 8) -> list[int]:
    """The ``n`` kept features with the most influence on the answer, most first."""
    g, p = found["graph"], found["pruned"]
    feats = [i for i in p.nodes() if g.kind(i) == "feature"]
    return sorted(feats, key=lambda i: -float(p.influence[i]))[:n]


def validate_by_suppression(model, found: dict, nodes: list[int]) -> list[dict]:
    """For each feature node: the graph's predicted change of the answer's (demeaned) logit when it
    is removed (:func:`total_effects`) against the real model's (:func:`suppress_feature`)."""
    predicted = total_effects(found["graph"])
    return [{**suppress_feature(model, found, n), "node": n, "predicted_total": float(predicted[n])} for n in nodes]


def operand_groups(model, found: dict) -> dict[str, list[int]]:
    """The kept features at each operand digit's position (``ROLES``), whatever their layer."""
    g, roles = found["graph"], position_roles(model, found["prompt"])
    kept = [n for n in found["pruned"].nodes() if g.kind(n) == "feature"]
    return {r: [n for n in kept if roles[g.describe(n)["pos"]] == r] for r in ROLES}


@torch.no_grad()
def suppress_group(model, found: dict, nodes: list[int]) -> dict:
    """Remove every feature of ``nodes`` at once in the real model (each one's activation x decoder
    row subtracted at its layer and position, everything downstream live): the answer's demeaned
    logit change, against the graph's prediction (the sum of the features' :func:`total_effects`:
    the graph is linear, so removals add), and what the model writes then."""
    g, rep = found["graph"], found["rep"]
    tok = int(g.logit_tokens[0])
    before = model(rep.tokens)[0, -1]
    after = model.run_with_hooks(rep.tokens, fwd_hooks=_removal_hooks(found, nodes))[0, -1]
    demeaned = lambda l: float(l[tok] - l.mean())  # noqa: E731
    predicted = float(total_effects(g)[nodes].sum()) if nodes else 0.0
    return {"n": len(nodes), "predicted": predicted, "actual": demeaned(after) - demeaned(before),
            "p_before": float(before.softmax(-1)[tok]), "p_after": float(after.softmax(-1)[tok]),
            "top_after": model.to_string(after.argmax().reshape(1))}


def supernode_groups(model, found: dict) -> dict[str, list[int]]:
    """The kept features grouped by (layer, role of their position): one supernode per pathway stage."""
    return {f"L{r['layer']} {r['role'].strip()}": r["features"] for r in pathways(model, found)}


def fact_graph(model, tcs, n_facts: int = 1) -> dict:
    """The graph of the first fact the model completes correctly (chapter 4's phrasing, subject
    early), with the subject's token span."""
    from course.tracing import known_facts

    fact = known_facts(model, n=n_facts)[0]
    return {**graph_for(model, tcs, fact.tokens), "fact": fact}


def influence_by_bucket(found: dict) -> torch.Tensor:
    """``[layer, bucket]``: the kept features' influence on the answer by layer and by position
    role (chapter 4's buckets: before the subject, its first, middle and last tokens, after it,
    the last token), as a share of the kept features' total."""
    from course.tracing.trace import BUCKETS, bucket_positions

    g, p, fact = found["graph"], found["pruned"], found["fact"]
    role = {pos: b for b, ps in enumerate(bucket_positions(g.n_pos, fact.subject)) for pos in ps}
    out = torch.zeros(g.n_layers, len(BUCKETS))
    for n in p.nodes():
        if g.kind(n) == "feature":
            d = g.describe(n)
            out[d["layer"], role[d["pos"]]] += float(p.influence[n])
    return out / out.sum()


def suppression_agreement(model, found: dict, rows: list[dict]) -> dict:
    """How well the graph predicts interventions: the share of ``rows`` (from
    :func:`validate_by_suppression`) where the real change has the predicted sign, and the
    suppression of the kept operand-digit feature with the largest predicted total effect."""
    g = found["graph"]
    roles = position_roles(model, found["prompt"])
    predicted = total_effects(g)
    operands = [n for n in top_features(found, found["stats"]["features_kept"])
                if roles[g.describe(n)["pos"]] in ROLES]
    pick = max(operands, key=lambda n: abs(float(predicted[n])))
    signs = [(r["predicted_total"] > 0) == (r["actual"] > 0) for r in rows]
    return {"sign_agreement": sum(signs) / len(signs), "operand": validate_by_suppression(model, found, [pick])[0]}
