"""circuit-tracer's file formats: the JSON graph its viewer opens, and per-layer transcoder
safetensors (``layer_{l}.safetensors`` with ``W_enc [d_sae, d_model]``, ``W_dec [d_sae, d_model]``,
``b_enc``, ``b_dec`` and, for TopK, ``k``), plus a ``config.yaml`` naming the hooks.

Our transcoders read ln_2's normalized input (before its weight and bias); the exported ones read
the MLP's actual input (after them): ln_2's weight and bias are folded into the encoder, so
``pre = mlp_in @ (W_enc / w)ᵀ + b_enc - (b / w) W_enc``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
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
    edge are dropped, except embeddings and logits."""
    g = pruned.graph
    nodes = {n: _node(g, n, float(pruned.influence[n]), to_text) for n in pruned.nodes()}
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w}
             for s, t, w in pruned.edges() if s in nodes and t in nodes]
    used = {l["source"] for l in links} | {l["target"] for l in links}
    kept = [v for v in nodes.values() if v["node_id"] in used or v["feature_type"] in ("embedding", "logit")]
    return {"metadata": {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": g.prompt_tokens,
                         "prompt": "".join(g.prompt_tokens), "node_threshold": pruned.node_threshold,
                         "schema_version": 1},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": kept, "links": links}


def save_graph_json(pruned: PrunedGraph, path: str | Path, slug: str, to_text=str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(graph_json(pruned, slug, to_text), indent=1) + "\n")
    return path


@torch.no_grad()
def folded_encoder(tc: SparseDictionary, ln_w: torch.Tensor, ln_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_enc [d_model, d_sae], b_enc) reading ln_2's output ``n * ln_w + ln_b`` instead of ``n``."""
    if ln_w.abs().min() < 1e-6:
        raise ValueError("ln_2 has a weight of zero: its input cannot be recovered from its output")
    return tc.W_enc / ln_w[:, None], tc.b_enc - (ln_b / ln_w) @ tc.W_enc


def save_circuit_tracer_transcoders(tcs: TranscoderSet, model, out: str | Path) -> Path:
    """``out/layer_{l}.safetensors`` for each layer and ``out/config.yaml``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for l, tc in enumerate(tcs):
        W_enc, b_enc = folded_encoder(tc, model.ln2_w[l].detach(), model.ln2_b[l].detach())
        state = {"W_enc": W_enc.T, "W_dec": tc.W_dec.detach(), "b_enc": b_enc, "b_dec": tc.b_dec.detach()}
        if tc.cfg.activation == "topk":
            state["k"] = torch.tensor(tc.cfg.k)
        save_file({k: v.to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
                   for k, v in state.items()}, out / f"layer_{l}.safetensors")
        paths.append(f"layer_{l}.safetensors")
    act = tcs[0].cfg.activation
    lines = ["# circuit-tracer transcoder set exported from the course (course.attribution.export)",
             f"model_name: {tcs[0].cfg.model_name}", "model_kind: transcoder_set",
             "feature_input_hook: ln2.hook_normalized   # the MLP's input, after ln_2's weight and bias",
             "feature_output_hook: hook_mlp_out", f"activation: {act}"]
    if act == "topk":
        lines.append(f"k: {tcs[0].cfg.k}")
    lines += [f"model_fingerprint: {tcs.fingerprint}", "transcoders:"] + [f"  - {p}" for p in paths]
    (out / "config.yaml").write_text("\n".join(lines) + "\n")
    return out


def load_circuit_tracer_transcoder(path: str | Path, activation: str = "relu") -> SparseDictionary:
    """A per-layer transcoder file as a :class:`SparseDictionary` reading the MLP's actual input
    (TopK when the file has ``k``; else ``activation``; JumpReLU thresholds are not supported)."""
    w = load_file(str(path))
    if "activation_function.threshold" in w or "W_skip" in w:
        raise ValueError(f"{path}: JumpReLU and skip connections are not supported here")
    d_sae, d_model = w["W_enc"].shape
    cfg = DictionaryConfig(d_in=d_model, d_sae=d_sae, d_out=w["b_dec"].shape[0],
                           activation="topk" if "k" in w else activation, k=int(w["k"]) if "k" in w else 16)
    tc = SparseDictionary(cfg)
    tc.load_state_dict({"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_enc"], "W_dec": w["W_dec"],
                        "b_dec": w["b_dec"]})
    return tc
