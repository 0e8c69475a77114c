"""circuit-tracer's file formats: the JSON graph its viewer opens, and per-layer transcoder
safetensors (``layer_{l}.safetensors`` with ``W_enc [d_sae, d_model]``, ``W_dec [d_sae, d_model]``,
``b_enc`` and ``b_dec``: exactly the tensors its loader accepts), plus a ``config.yaml`` naming
the hooks (``model_kind``, ``scan``, ``feature_input_hook``, ``feature_output_hook``,
``transcoders``; the activation, ``topk`` with its ``k``, is there and in each file's metadata).

Our transcoders read ln_2's normalized input (before its weight and bias); the exported ones read
the MLP's actual input (after them: circuit-tracer's ``mlp.hook_in``, the hook its
TransformerLens replacement model puts on each MLP's input): ln_2's weight and bias are folded
into the encoder, so ``pre = mlp_in @ (W_enc / w)ᵀ + b_enc - (b / w) W_enc``.

circuit-tracer 0.5 loads such a file with a ReLU, or with its JumpReLU when the file holds
``activation_function.threshold`` (a JumpReLU set loads as it is); a TopK set needs its activation
set after loading (``tools/circuit_tracer_crosscheck.py`` shows how, and checks the result against ours).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from course.attribution.pruning import PrunedGraph
from course.attribution.transcoders import TranscoderSet
from course.saes import DictionaryConfig, SparseDictionary


def _pair(a: int, b: int) -> int:
    """Cantor's pairing: the viewer's single integer for (layer, feature)."""
    return (a + b) * (a + b + 1) // 2 + b


def _node(graph, node: int, influence: float, to_text) -> dict:
    d = graph.describe(node)
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": "",
            "influence": influence, "activation": None, "ctx_idx": d["pos"]}
    if d["kind"] == "feature":
        nid = f"{d['layer']}_{d['feature']}_{d['pos']}"
        return {**base, "node_id": nid, "feature": _pair(d["layer"], d["feature"]), "layer": str(d["layer"]),
                "feature_type": "cross layer transcoder", "jsNodeId": f"{d['layer']}_{d['feature']}-0",
                "activation": d["activation"]}
    if d["kind"] == "error":
        return {**base, "node_id": f"{d['layer']}_-1_{d['pos']}", "feature": -1, "layer": str(d["layer"]),
                "feature_type": "mlp reconstruction error", "jsNodeId": f"{d['layer']}_-1-{d['pos']}"}
    if d["kind"] == "embedding":
        return {**base, "node_id": f"E_{d['token']}_{d['pos']}", "feature": d["pos"], "layer": "E",
                "feature_type": "embedding", "jsNodeId": f"E_{d['token']}-{d['pos']}"}
    layer = str(graph.n_layers + 1)
    target = node == graph.slices()["logit"].start
    return {**base, "node_id": f"{layer}_{d['token']}_{d['pos']}", "feature": d["token"], "layer": layer,
            "feature_type": "logit", "token_prob": d["probability"], "is_target_logit": target,
            "jsNodeId": f"L_{d['token']}-{d['pos']}", "influence": None,
            "clerp": f'Output "{to_text(d["token"])}" (p={d["probability"]:.3f})'}


def graph_json(pruned: PrunedGraph, slug: str, to_text=str, scan: str = "course-transcoders") -> dict:
    """The pruned graph as circuit-tracer's JSON (``metadata``, ``qParams``, ``nodes``, ``links``).
    ``to_text(token_id)`` names a logit's token (e.g. ``model.to_string``). Nodes without a kept
    edge are dropped, except embeddings and logits. A node's ``influence`` is circuit-tracer's:
    the share of all nodes' influence carried by the nodes at least as influential (the viewer's
    pruning slider keeps the nodes under a share). Error nodes are ``{layer}_-1_{pos}`` (ours:
    circuit-tracer 0.5 writes ``0_{layer}_{pos}``, which can equal a layer-0 feature's id; the
    viewer only needs ids to be unique)."""
    g = pruned.graph
    share = cumulative_influence(pruned.influence)
    nodes = {n: _node(g, n, float(share[n]), to_text) for n in pruned.nodes()}
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w}
             for s, t, w in pruned.edges() if s in nodes and t in nodes]
    used = {l["source"] for l in links} | {l["target"] for l in links}
    kept = [v for v in nodes.values() if v["node_id"] in used or v["feature_type"] in ("embedding", "logit")]
    return {"metadata": {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": g.prompt_tokens,
                         "prompt": "".join(g.prompt_tokens), "node_threshold": pruned.node_threshold,
                         "schema_version": 1},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": kept, "links": links}


def cumulative_influence(infl: torch.Tensor) -> torch.Tensor:
    """Per node, the share of the total influence carried by the nodes at least as influential
    (circuit-tracer's ``cumulative_scores``: the most influential node gets its own share, the
    least 1)."""
    order = infl.argsort(descending=True)
    out = torch.zeros_like(infl)
    out[order] = infl[order].cumsum(0) / infl.sum().clamp_min(1e-12)
    return out


def save_graph_json(pruned: PrunedGraph, path: str | Path, slug: str, to_text=str) -> Path:
    """Write the graph to ``path`` and list it in ``graph-metadata.json`` beside it: a folder of
    such files is what circuit-tracer's local server (``circuit_tracer.frontend.local_server.serve``)
    shows. Name the file ``{slug}.json``: the viewer fetches a listed graph by its slug."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = graph_json(pruned, slug, to_text)
    path.write_text(json.dumps(data, indent=1) + "\n")
    index = path.parent / "graph-metadata.json"
    graphs = json.loads(index.read_text())["graphs"] if index.exists() else []
    graphs = [g for g in graphs if g.get("slug") != slug] + [data["metadata"]]
    index.write_text(json.dumps({"graphs": graphs}, indent=1) + "\n")
    return path


@torch.no_grad()
def folded_encoder(tc: SparseDictionary, ln_w: torch.Tensor, ln_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_enc [d_model, d_sae], b_enc) reading ln_2's output ``n * ln_w + ln_b`` instead of ``n``."""
    if ln_w.abs().min() < 1e-6:
        raise ValueError("ln_2 has a weight of zero: its input cannot be recovered from its output")
    return tc.W_enc / ln_w[:, None], tc.b_enc - (ln_b / ln_w) @ tc.W_enc


def save_circuit_tracer_transcoders(tcs: TranscoderSet, model, out: str | Path, scan: str = "course-transcoders") -> Path:
    """``out/layer_{l}.safetensors`` for each layer and ``out/config.yaml``. ``k`` is not a tensor
    (circuit-tracer's loader refuses unknown tensors): it is in ``config.yaml`` and in each file's
    safetensors metadata (``activation``, ``k``). A JumpReLU set's thresholds are the tensor
    ``activation_function.threshold``, which circuit-tracer's loader turns into its own JumpReLU
    (folding ln_2 into the encoder leaves the pre-activations, hence θ, unchanged)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    act = tcs[0].cfg.activation
    meta = {"activation": act, "k": str(tcs[0].cfg.k) if act == "topk" else "",
            "feature_input_hook": "mlp.hook_in", "feature_output_hook": "hook_mlp_out",
            "model_fingerprint": tcs.fingerprint or ""}
    for l, tc in enumerate(tcs):
        W_enc, b_enc = folded_encoder(tc, model.ln2_w[l].detach(), model.ln2_b[l].detach())
        state = {"W_enc": W_enc.T, "W_dec": tc.W_dec.detach(), "b_enc": b_enc, "b_dec": tc.b_dec.detach()}
        if act == "jumprelu":
            state["activation_function.threshold"] = tc.threshold.detach()
        save_file({k: v.to("cpu", torch.float32).contiguous() for k, v in state.items()},
                  out / f"layer_{l}.safetensors", metadata={**meta, "layer": str(l)})
        paths.append(f"layer_{l}.safetensors")
    how = (["# circuit-tracer 0.5 loads each layer's JumpReLU (activation_function.threshold) as it is."]
           if act == "jumprelu" else
           ["# circuit-tracer 0.5 loads each layer with a ReLU:",
            "# set the TopK activation below after loading (see tools/circuit_tracer_crosscheck.py)."])
    lines = ["# circuit-tracer transcoder set exported from the course (course.attribution.export).",
             "# Paths are relative to this file; " + how[0][2:], *how[1:],
             f"model_name: {tcs[0].cfg.model_name}", "model_kind: transcoder_set", f"scan: {scan}",
             "feature_input_hook: mlp.hook_in   # the MLP's input, after ln_2's weight and bias",
             "feature_output_hook: hook_mlp_out", f"activation: {act}"]
    if act == "topk":
        lines.append(f"k: {tcs[0].cfg.k}")
    lines += [f"model_fingerprint: {tcs.fingerprint}", "transcoders:"] + [f"  - {p}" for p in paths]
    (out / "config.yaml").write_text("\n".join(lines) + "\n")
    return out


def load_circuit_tracer_transcoder(path: str | Path, activation: str = "relu") -> SparseDictionary:
    """A per-layer transcoder file as a :class:`SparseDictionary` reading the MLP's actual input
    (JumpReLU when it holds ``activation_function.threshold``, as circuit-tracer's loader decides;
    TopK when the file's metadata, or an older file's ``k`` tensor, gives ``k``; else
    ``activation``; skip connections are not supported)."""
    w = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "W_skip" in w:
        raise ValueError(f"{path}: skip connections are not supported here")
    threshold = w.pop("activation_function.threshold", None)
    k = int(w.pop("k")) if "k" in w else (int(meta["k"]) if meta.get("k") else None)
    act = "jumprelu" if threshold is not None else "topk" if k is not None or meta.get("activation") == "topk" else activation
    d_sae, d_model = w["W_enc"].shape
    cfg = DictionaryConfig(d_in=d_model, d_sae=d_sae, d_out=w["b_dec"].shape[0], activation=act,
                           k=k if k is not None else 16)
    tc = SparseDictionary(cfg)
    state = {"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    if threshold is not None:
        state["log_threshold"] = threshold.log()
    tc.load_state_dict(state)
    return tc
