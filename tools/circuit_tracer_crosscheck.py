"""Cross-check the course's attribution graph against the open-source ``circuit-tracer`` library.

circuit-tracer cannot be installed next to the project's pins (it needs transformers <= 4.57.3;
the project has 5.x), so this runs in two steps, in two environments, outside CI:

1. ``export`` — in the project's environment. Writes to OUT (default
   ``test-artifacts/circuit-tracer``):

   - ``transcoders/``: the shipped transcoders in circuit-tracer's per-layer safetensors format
     (``course.attribution.export.save_circuit_tracer_transcoders``) with ``config.yaml``;
   - ``graphs/course-addition-36-59.json`` and ``graphs/graph-metadata.json``: our pruned graph
     of ``addition_prompt(36, 59)`` ("calc: 36 + 59 = 9", next token "5") in circuit-tracer's JSON
     graph format (``save_graph_json``);
   - ``ours.pt``: our full graph (tensors only: adjacency, active features, activations, logits,
     pruning masks, influence), and the same graph with circuit-tracer's embedding nodes (token
     embedding only; see below).

2. ``check`` — in circuit-tracer's environment (it does not import ``course``). Builds
   circuit-tracer's TransformerLens replacement model from the course model's folder
   (``course/assets/course-gpt2``: a HookedTransformerConfig made by hand from its GPT-2 config,
   weights converted from the Hugging Face model, nothing from the hub), loads the exported
   transcoders with circuit-tracer's own loader, runs ``circuit_tracer.attribute`` on the same
   token ids and compares the two graphs; then checks that our JSON graph validates against
   circuit-tracer's graph schema, that circuit-tracer's ``create_graph_files`` writes its own graph
   beside ours, and that its local server serves both; and compares the link weights the viewer
   reads: our JSON's against our adjacency (``[target, source]``) and our edge mask, against
   circuit-tracer's adjacency, and against circuit-tracer's JSON on the links both files have.
   Prints a report (and ``report.json``); exits 1 if our JSON's weights are not our adjacency's.

Commands (from the repository root)::

    # the project's environment
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python tools/circuit_tracer_crosscheck.py export

    # circuit-tracer's environment, made once (CPU torch first, then circuit-tracer with torch pinned,
    # so that pip does not fetch a CUDA torch):
    python3 -m venv /work/ct-venv
    /work/ct-venv/bin/pip install torch==2.13.0
    echo "torch==2.13.0" > /tmp/ct-constraints.txt
    /work/ct-venv/bin/pip install -c /tmp/ct-constraints.txt circuit-tracer==0.5.0
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 /work/ct-venv/bin/python tools/circuit_tracer_crosscheck.py check

What that installed (and this was written against): circuit-tracer 0.5.0, torch 2.13.0+cpu,
transformer-lens 3.2.1, transformers 4.57.3, tokenizers 0.22.2, huggingface-hub 0.36.2,
nnsight 0.8.1, safetensors 0.8.0, numpy 2.4.6, pydantic 2.14.3 (with their dependencies).

To look at the graphs in circuit-tracer's viewer (a browser that can reach the viewer's
JavaScript libraries; feature pages fetch examples from Anthropic's servers and stay empty for
our transcoders)::

    /work/ct-venv/bin/python -c "from circuit_tracer.frontend.local_server import serve; \\
        import time; serve('test-artifacts/circuit-tracer/graphs', port=8032); time.sleep(1e9)"
    # then open http://localhost:8032/index.html (both graphs are in its list)

Conventions and how they are aligned (everything else is the same model):

- Position 0 (the BOS token): circuit-tracer zeroes every feature and error there (its MLP output
  is a constant of the replacement model); ours keeps them. Compared: the nodes both have.
- Embedding nodes: circuit-tracer's are the token embedding ``W_E[t]`` (the position embedding is
  a constant); ours are ``W_E[t] + W_pos[p]``. The export also computes our graph with token-only
  embedding nodes (the position embedding moved into the constants), which is what is compared;
  the unaligned embedding edges are reported too.
- Transcoder input: ours read ln_2's normalized input; the exported ones read the MLP's input
  (``mlp.hook_in``) with ln_2's weight and bias folded into the encoder.
- Activation: circuit-tracer 0.5 loads per-layer files with a ReLU and its ``TopK`` keeps the k
  largest pre-activations even when negative; ours is TopK then ReLU. After loading, each
  transcoder's ``activation_function`` is set to TopK-then-ReLU (``k`` from ``config.yaml``).
- Logit nodes: both use the logit minus the mean logit (circuit-tracer's demeaned unembedding
  vector), attention patterns and every layer norm's scale frozen, MLP outputs not differentiated.
  The targets are ours (the top token), passed to circuit-tracer.
- Pruning: both default to node 0.8 / edge 0.98, but the rules differ: ours ranks features only
  (error nodes always stay), circuit-tracer ranks features and error nodes together and then drops
  nodes left without edges. The report compares the feature sets each keeps, and also runs
  circuit-tracer's rule on our (aligned) adjacency.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "test-artifacts" / "circuit-tracer"
MODEL_DIR = ROOT / "course" / "assets" / "course-gpt2"
SLUG = "course-addition-36-59"
CT_SLUG = "circuit-tracer-addition-36-59"


# -- step 1: the project's environment -------------------------------------------------------------

def export(out: Path, transcoders: Path | None = None) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    import course
    from course.attribution import (TranscoderSet, attribute, load_shipped_transcoders, prune,
                                    save_circuit_tracer_transcoders)
    from course.attribution.export import save_graph_json
    from course.attribution.replacement import LocalReplacement
    from course.chapters.ch7_attribution_graphs.findings import addition_graph, addition_prompt

    torch.set_grad_enabled(False)
    model = course.load_model(device="cpu")
    if transcoders is None:
        tcs = load_shipped_transcoders(model, strict=True)
    else:                              # another set, e.g. JumpReLU ones from train_transcoders --out
        tcs = TranscoderSet.load(transcoders)
        tcs.check_fresh(model)
    found = addition_graph(model, tcs, 36, 59)
    graph, pruned, rep = found["graph"], found["pruned"], found["rep"]

    class TokenOnlyEmbedding(LocalReplacement):
        """circuit-tracer's embedding nodes: ``W_E[t]``; the position embedding is a constant."""

        def embedding(self):
            return self.model.W_E[self.tokens[0]]

        def forward(self, embedding=None, writes=None):
            e = self.embedding() if embedding is None else embedding
            return super().forward(e + self.model.W_pos[: self.n_pos], writes)

    aligned = attribute(TokenOnlyEmbedding(**vars(rep)), logit_tokens=graph.logit_tokens)
    aligned_pruned = prune(aligned)

    save_circuit_tracer_transcoders(tcs, model, out / "transcoders")
    save_graph_json(pruned, out / "graphs" / f"{SLUG}.json", SLUG, model.to_string)
    prompt = addition_prompt(36, 59)
    torch.save({
        "prompt": prompt, "tokens": rep.tokens[0].cpu(), "str_tokens": graph.prompt_tokens,
        "model_dir": str(MODEL_DIR), "k": tcs[0].cfg.k, "activation": tcs[0].cfg.activation,
        "n_layers": graph.n_layers, "active": graph.active, "activation_values": graph.activation_values,
        "dense_activations": rep.activations.cpu(), "logits": rep.logits[-1].cpu(),
        "logit_tokens": graph.logit_tokens, "logit_probabilities": graph.logit_probabilities,
        "adjacency": graph.adjacency, "adjacency_token_embed": aligned.adjacency,
        "node_mask": pruned.node_mask, "edge_mask": pruned.edge_mask, "influence": pruned.influence,
        "node_mask_token_embed": aligned_pruned.node_mask, "influence_token_embed": aligned_pruned.influence,
        "max_logit_error": found["max_logit_error"], "stats": found["stats"],
    }, out / "ours.pt")
    print(f"prompt {prompt!r}: {graph.n_features} active features, {graph.n_nodes} nodes; "
          f"{pruned.features_kept} features kept by pruning; answer {found['answer']!r} "
          f"(p={found['probability']:.3f})")
    print(f"wrote {out}/transcoders, {out}/graphs/{SLUG}.json, {out}/ours.pt")


# -- step 2: circuit-tracer's environment ------------------------------------------------------------

def _load_ct_model(model_dir: Path, transcoder_dir: Path, dtype=None):
    """circuit-tracer's TransformerLens replacement model of the course GPT-2, offline."""
    import torch
    import yaml
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.utils.hf_utils import load_transcoders
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformers import AutoTokenizer, GPT2LMHeadModel

    dtype = dtype or torch.float32
    hf = GPT2LMHeadModel.from_pretrained(model_dir, dtype=dtype).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn=c.activation_function,
        normalization_type="LN", eps=c.layer_norm_epsilon, positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", model_name="course-gpt2", tokenizer_name=str(model_dir),
        default_prepend_bos=True, device="cpu", dtype=dtype)

    config = yaml.safe_load((transcoder_dir / "config.yaml").read_text())
    config["transcoders"] = [str(transcoder_dir / p) for p in config["transcoders"]]   # paths relative to the file
    transcoders = load_transcoders(config, device=torch.device("cpu"), dtype=dtype)

    class TopKReLU(TopK):
        """Ours: the k largest pre-activations, then a ReLU (circuit-tracer's TopK keeps negatives)."""

        def forward(self, x):
            return super().forward(x).relu()

    if config.get("activation") == "topk":
        for t in transcoders:
            t.activation_function = TopKReLU(int(config["k"]))

    model = TransformerLensReplacementModel(cfg, tokenizer=tok)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False,
                                      refactor_factored_attn_matrices=False)
    model._configure_replacement_model(transcoders)
    model.eval()
    return model, tok, config, hf


def _stats(a, b, mask=None) -> dict:
    """How close ``b`` is to ``a`` (ours): max |diff|, that over max |a|, correlation, counts."""
    import torch

    a, b = a.double().flatten(), b.double().flatten()
    if mask is not None:
        m = mask.flatten()
        a, b = a[m], b[m]
    nz = (a != 0) | (b != 0)
    if int(nz.sum()) == 0:
        return {"n": 0}
    a, b = a[nz], b[nz]
    d = (a - b).abs()
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else 1.0
    return {"n": int(len(a)), "max_abs_diff": float(d.max()), "max_abs": float(a.abs().max()),
            "max_rel_diff": float(d.max() / a.abs().max().clamp_min(1e-30)), "corr": corr,
            "sign_agree": float(((a > 0) == (b > 0)).double().mean())}


def check(out: Path, server_port: int = 8032) -> dict:
    import torch
    from circuit_tracer import attribute
    from circuit_tracer.graph import Graph, compute_node_influence, prune_graph

    torch.set_grad_enabled(True)
    ours = torch.load(out / "ours.pt", weights_only=False)
    model, tok, config, hf = _load_ct_model(Path(ours["model_dir"]), out / "transcoders")
    report: dict = {"prompt": ours["prompt"]}

    # tokenization: circuit-tracer's tokenizer + BOS == ours
    ids = tok(ours["prompt"], add_special_tokens=False).input_ids
    ct_tokens = model.ensure_tokenized(torch.tensor([tok.bos_token_id] + ids))
    report["tokens_match"] = ct_tokens.tolist() == ours["tokens"].tolist()
    tokens = ours["tokens"]

    # the model itself: TransformerLens (converted weights) vs ours (the real model), last position
    with torch.no_grad():
        tl_logits = model(tokens[None])[0, -1]
    report["model_logits"] = {"max_abs_diff": float((tl_logits - ours["logits"]).abs().max()),
                              "max_abs": float(ours["logits"].abs().max())}

    graph = attribute(tokens, model, attribution_targets=ours["logit_tokens"].clone(), batch_size=256)
    graph.scan = config["scan"]
    graph.to_pt(str(out / "circuit_tracer_graph.pt"))
    L, P = ours["n_layers"], len(tokens)

    # active features: (layer, pos, feature) sets and values
    ct_active = {tuple(x): float(v) for x, v in zip(graph.active_features.tolist(), graph.activation_values.tolist())}
    our_active = {tuple(x): float(v) for x, v in zip(ours["active"].tolist(), ours["activation_values"].tolist())}
    our_after_bos = {k: v for k, v in our_active.items() if k[1] > 0}
    common = sorted(set(ct_active) & set(our_after_bos))
    report["features"] = {
        "ours": len(our_active), "ours_at_bos": len(our_active) - len(our_after_bos), "circuit_tracer": len(ct_active),
        "common": len(common), "only_ours_after_bos": len(set(our_after_bos) - set(ct_active)),
        "only_circuit_tracer": len(set(ct_active) - set(our_after_bos)),
        "activation": _stats(torch.tensor([our_active[k] for k in common]), torch.tensor([ct_active[k] for k in common])),
    }
    # what circuit-tracer's own TopK (no ReLU) would add: negative pre-activations among the k largest
    if config.get("activation") == "topk":
        with torch.no_grad():
            _, pre = model.get_activations(tokens[None], apply_activation_function=False)
        kth = pre[:, 1:].topk(int(config["k"]), dim=-1).values
        report["features"]["negative_in_top_k_after_bos"] = int((kth < 0).sum())
    report["logit"] = {"tokens": [tok.decode([int(t)]) for t in ours["logit_tokens"]],
                       "probability_ours": ours["logit_probabilities"].tolist(),
                       "probability_circuit_tracer": graph.logit_probabilities.tolist()}

    # node maps: circuit-tracer's index -> ours, for the nodes both have
    ct_feats = graph.active_features[graph.selected_features].tolist()
    our_index = {tuple(x): i for i, x in enumerate(ours["active"].tolist())}
    nf_ct, nf_o = len(ct_feats), len(ours["active"])
    n_logits = len(ours["logit_tokens"])
    pairs = [(i, our_index[tuple(x)]) for i, x in enumerate(ct_feats) if tuple(x) in our_index]
    kinds = {"feature": pairs,
             "error": [(nf_ct + l * P + p, nf_o + l * P + p) for l in range(L) for p in range(1, P)],
             "embedding": [(nf_ct + L * P + p, nf_o + L * P + p) for p in range(P)],
             "logit": [(nf_ct + L * P + P + j, nf_o + L * P + P + j) for j in range(n_logits)]}
    A_ct = graph.adjacency_matrix.double()
    edges = {}
    for name, key in (("aligned", "adjacency_token_embed"), ("unaligned", "adjacency")):
        A_o = ours[key].double()
        blocks = {}
        for src in ("feature", "error", "embedding"):
            for tgt in ("feature", "logit"):
                s_ct, s_o = map(list, zip(*kinds[src]))
                t_ct, t_o = map(list, zip(*kinds[tgt]))
                blocks[f"{src}->{tgt}"] = _stats(A_o[t_o][:, s_o], A_ct[t_ct][:, s_ct])
        allpairs = [p for k in ("feature", "error", "embedding", "logit") for p in kinds[k]]
        i_ct, i_o = map(list, zip(*allpairs))
        blocks["all"] = _stats(A_o[i_o][:, i_o], A_ct[i_ct][:, i_ct])
        edges[name] = blocks
    # edges that only one graph has: from our BOS features and BOS errors
    bos_feats = [i for i, x in enumerate(ours["active"].tolist()) if x[1] == 0]
    bos_errs = [nf_o + l * P for l in range(L)]
    A_o = ours["adjacency_token_embed"].double()
    edges["ours_only_from_bos"] = {"sum_abs": float(A_o[:, bos_feats + bos_errs].abs().sum()),
                                   "share_of_all_abs": float(A_o[:, bos_feats + bos_errs].abs().sum() / A_o.abs().sum())}
    report["edges"] = edges

    # influence: the same formula (circuit-tracer's) on both graphs; top features
    def infl(A, probs, n_nodes):
        w = torch.zeros(n_nodes)
        w[-len(probs):] = probs.float()
        return compute_node_influence(A.float(), w)

    inf_ct = infl(graph.adjacency_matrix, graph.logit_probabilities, A_ct.shape[0])
    inf_o = infl(ours["adjacency_token_embed"], ours["logit_probabilities"], ours["adjacency"].shape[0])
    top = {}
    for k in (10, 20, 50):
        top_o = set(inf_o[:nf_o].argsort(descending=True)[:k].tolist())
        top_c = {o for c, o in pairs if c in set(inf_ct[:nf_ct].argsort(descending=True)[:k].tolist())}
        top[f"top{k}_overlap"] = len(top_o & top_c) / k
        top[f"top{k}_ours_at_bos"] = sum(1 for i in top_o if ours["active"][i, 1] == 0)
    c_idx, o_idx = map(list, zip(*pairs))
    top["feature_influence"] = _stats(inf_o[o_idx], inf_ct[c_idx])
    top["our_influence_share_at_bos"] = float(inf_o[bos_feats].sum() / inf_o[:nf_o].sum()) if bos_feats else 0.0
    # our graph with circuit-tracer's BOS convention (BOS features and errors removed as sources)
    no_bos = ours["adjacency_token_embed"].clone()
    no_bos[:, bos_feats + bos_errs] = 0
    no_bos[bos_feats + bos_errs] = 0
    inf_nb = infl(no_bos, ours["logit_probabilities"], no_bos.shape[0])
    top["feature_influence_ours_without_bos"] = _stats(inf_nb[o_idx], inf_ct[c_idx])
    report["influence"] = top

    # pruning: each library's rule on its own graph, and circuit-tracer's rule on our graph
    ct_mask, _, _ = prune_graph(graph, 0.8, 0.98)
    ct_kept = {tuple(ct_feats[i]) for i in range(nf_ct) if ct_mask[i]}
    our_kept = {tuple(ours["active"][i].tolist()) for i in range(nf_o) if ours["node_mask_token_embed"][i]}
    ours_as_ct = Graph(input_string=ours["prompt"], input_tokens=tokens, active_features=ours["active"],
                       adjacency_matrix=ours["adjacency_token_embed"].float(), cfg=model.cfg,
                       selected_features=torch.arange(nf_o), activation_values=ours["activation_values"],
                       logit_targets=graph.logit_targets, logit_probabilities=ours["logit_probabilities"].float(),
                       scan=config["scan"])
    o_mask, _, _ = prune_graph(ours_as_ct, 0.8, 0.98)
    ours_ct_rule = {tuple(ours["active"][i].tolist()) for i in range(nf_o) if o_mask[i]}
    ours_as_ct.adjacency_matrix = no_bos.float()
    nb_mask, _, _ = prune_graph(ours_as_ct, 0.8, 0.98)
    ours_ct_rule_nb = {tuple(ours["active"][i].tolist()) for i in range(nf_o) if nb_mask[i]}

    def jac(a, b):
        return len(a & b) / max(len(a | b), 1)

    report["pruning"] = {
        "ours_kept": len(our_kept), "ours_kept_at_bos": sum(1 for k in our_kept if k[1] == 0),
        "circuit_tracer_kept": len(ct_kept), "both": len(our_kept & ct_kept), "jaccard": jac(our_kept, ct_kept),
        "jaccard_after_bos": jac({k for k in our_kept if k[1] > 0}, ct_kept),
        "ct_rule_on_ours_kept": len(ours_ct_rule), "ct_rule_on_ours_vs_circuit_tracer_jaccard": jac(ours_ct_rule, ct_kept),
        "ct_rule_on_ours_after_bos_vs_circuit_tracer_jaccard": jac({k for k in ours_ct_rule if k[1] > 0}, ct_kept),
        "ct_rule_on_ours_without_bos_vs_circuit_tracer_jaccard": jac(ours_ct_rule_nb, ct_kept),
    }

    report["viewer"] = _check_viewer(out, graph, server_port)
    gdir = out / "graphs"
    our_to_ct = {o: c for pairs_ in kinds.values() for c, o in pairs_}
    report["links"] = compare_links(ours, json.loads((gdir / f"{SLUG}.json").read_text()),
                                    json.loads((gdir / f"{CT_SLUG}.json").read_text()), A_ct, our_to_ct)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _json_key(node: dict) -> tuple:
    """A graph-JSON node as (kind, ...) from its fields, the same in both libraries' files (error
    node ids are not: circuit-tracer 0.5 writes ``0_{layer}_{pos}``, later versions and ours
    ``{layer}_-1_{pos}``). A feature's index is the middle of its id, ``{layer}_{feature}_{pos}``."""
    kind, pos = node["feature_type"], int(node["ctx_idx"])
    if kind == "cross layer transcoder":
        return ("feature", int(node["layer"]), pos, int(node["node_id"].split("_")[1]))
    if kind == "mlp reconstruction error":
        return ("error", int(node["layer"]), pos)
    if kind == "embedding":
        return ("embedding", pos)
    return ("logit", int(node["feature"]))           # the token id


def _json_links(data: dict) -> tuple[dict, int]:
    """``{(source key, target key): weight}`` of a graph JSON, and how many links were left out
    because an id names two nodes (circuit-tracer 0.5's error ids can equal a layer-0 feature's)."""
    keys, twice = {}, set()
    for n in data["nodes"]:
        if n["node_id"] in keys:
            twice.add(n["node_id"])
        keys[n["node_id"]] = _json_key(n)
    links, ambiguous = {}, 0
    for link in data["links"]:
        if link["source"] in twice or link["target"] in twice:
            ambiguous += 1
        else:
            links[keys[link["source"]], keys[link["target"]]] = float(link["weight"])
    return links, ambiguous


def _our_node_index(ours: dict) -> dict:
    """Node key -> index in our adjacency (features, errors, embeddings, logits: graph.py's order)."""
    L, P, nf = ours["n_layers"], len(ours["tokens"]), len(ours["active"])
    index = {("feature", l, p, f): i for i, (l, p, f) in enumerate(ours["active"].tolist())}
    index.update({("error", l, p): nf + l * P + p for l in range(L) for p in range(P)})
    index.update({("embedding", p): nf + L * P + p for p in range(P)})
    index.update({("logit", t): nf + L * P + P + j for j, t in enumerate(ours["logit_tokens"].tolist())})
    return index


def compare_links(ours: dict, our_json: dict, ct_json: dict, A_ct, our_to_ct: dict) -> dict:
    """The weights of the links in the viewer files, where the viewer reads them.

    - ``ours_json``: every link of our JSON against our adjacency, read ``[target, source]``; the
      set of links against our pruning's edge mask. Exact up to JSON's float text.
    - ``ours_json_vs_circuit_tracer_adjacency``: our links whose two nodes circuit-tracer has,
      against its adjacency (``[target, source]`` too), by the source's kind. Our JSON holds the
      unaligned graph, so links from embeddings (ours ``W_E[t] + W_pos[p]``) differ by design.
    - ``json_vs_json``: the links both JSON files have (circuit-tracer's file holds its own pruning).
    """
    import torch

    index = _our_node_index(ours)
    A_o = ours["adjacency"].double()
    links, ambiguous = _json_links(our_json)
    pairs = [(index[s], index[t]) for s, t in links]
    weights = torch.tensor(list(links.values()), dtype=torch.float64)
    expected = torch.tensor([float(A_o[t, s]) for s, t in pairs], dtype=torch.float64)
    mask = ours["edge_mask"]
    masked = {(int(s), int(t)) for t, s in mask.nonzero().tolist()}
    diff = float((weights - expected).abs().max()) if len(pairs) else 0.0
    scale = float(expected.abs().max()) if len(pairs) else 0.0
    result = {"ours_json": {
        "links": len(our_json["links"]), "ambiguous_ids": ambiguous, "edge_mask_edges": len(masked),
        "missing_from_edge_mask": len(masked - set(pairs)), "not_in_edge_mask": len(set(pairs) - masked),
        "zero_weight": int((weights == 0).sum()), "positive": int((weights > 0).sum()),
        "negative": int((weights < 0).sum()), "max_abs_diff": diff, "max_abs": scale,
        "weights_match": bool(len(pairs)) and diff <= 1e-6 * max(scale, 1e-30) and not (weights == 0).any()
                         and set(pairs) == masked}}

    A_ct = A_ct.double()
    by_kind: dict = {}
    for (s_key, t_key), w in links.items():
        s, t = index[s_key], index[t_key]
        if s in our_to_ct and t in our_to_ct:
            group = "from_embeddings_unaligned" if s_key[0] == "embedding" else "from_features_and_errors"
            by_kind.setdefault(group, ([], []))
            by_kind[group][0].append(w)
            by_kind[group][1].append(float(A_ct[our_to_ct[t], our_to_ct[s]]))
    compared = {k: _stats(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
                for k, (a, b) in by_kind.items()}
    compared["without_circuit_tracer_nodes"] = len(links) - sum(len(a) for a, _ in by_kind.values())
    result["ours_json_vs_circuit_tracer_adjacency"] = compared

    theirs, ct_ambiguous = _json_links(ct_json)
    both = sorted(set(links) & set(theirs))
    split = {"from_features_and_errors": [k for k in both if k[0][0] != "embedding"],
             "from_embeddings_unaligned": [k for k in both if k[0][0] == "embedding"]}
    result["json_vs_json"] = {
        **{k: _stats(torch.tensor([links[x] for x in v], dtype=torch.float64),
                     torch.tensor([theirs[x] for x in v], dtype=torch.float64)) for k, v in split.items()},
        "both": len(both), "ours_only": len(set(links) - set(theirs)), "circuit_tracer_only": len(set(theirs) - set(links)),
        "circuit_tracer_ambiguous_ids": ct_ambiguous,
        "circuit_tracer_zero_weight": sum(1 for w in theirs.values() if w == 0)}
    return result


def _check_viewer(out: Path, graph, port: int) -> dict:
    """Our JSON against circuit-tracer's schema; its own graph file written beside ours; both served."""
    import urllib.request

    from circuit_tracer.frontend.graph_models import Model
    from circuit_tracer.frontend.local_server import serve
    from circuit_tracer.utils.create_graph_files import create_graph_files

    gdir = out / "graphs"
    ours = json.loads((gdir / f"{SLUG}.json").read_text())
    parsed = Model.model_validate(ours)
    ids = [n.node_id for n in parsed.nodes]
    result = {"schema_valid": True, "nodes": len(ids), "links": len(parsed.links), "unique_node_ids": len(set(ids)) == len(ids),
              "links_resolve": all(l["source"] in set(ids) and l["target"] in set(ids) for l in parsed.links)}
    create_graph_files(graph, CT_SLUG, str(gdir), node_threshold=0.8, edge_threshold=0.98)
    theirs = json.loads((gdir / f"{CT_SLUG}.json").read_text())
    result["circuit_tracer_json"] = {"nodes": len(theirs["nodes"]), "links": len(theirs["links"])}
    result["same_keys_as_circuit_tracer"] = (set(ours) == set(theirs) and set(ours["metadata"]) == set(theirs["metadata"])
                                             and {k for n in ours["nodes"] for k in n} == {k for n in theirs["nodes"] for k in n})
    server = serve(str(gdir), port=port)
    try:
        got = {}
        for path in ("/index.html", "/data/graph-metadata.json", f"/graph_data/{SLUG}.json", f"/graph_data/{CT_SLUG}.json"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                got[path] = (r.status, r.read())
        listed = {g["slug"] for g in json.loads(got["/data/graph-metadata.json"][1])["graphs"]}
        result["served"] = {p: s for p, (s, _) in got.items()}
        result["listed_slugs"] = sorted(listed)
        result["served_graph_parses"] = Model.model_validate_json(got[f"/graph_data/{SLUG}.json"][1]) is not None
    finally:
        server.stop()
    return result


def _print(report: dict) -> None:
    f, e, i, p, v = (report[k] for k in ("features", "edges", "influence", "pruning", "viewer"))

    def s(x):
        if not x.get("n"):
            return "no edges"
        return (f"n={x['n']:5d}  max|diff|={x['max_abs_diff']:.2e}  (of max {x['max_abs']:.3g}: "
                f"{x['max_rel_diff']:.1e})  corr={x['corr']:.8f}")

    print(f"prompt {report['prompt']!r}; tokens match: {report['tokens_match']}")
    print(f"model logits (TransformerLens vs ours): max|diff| {report['model_logits']['max_abs_diff']:.2e} "
          f"of {report['model_logits']['max_abs']:.3g}")
    print(f"logit targets {report['logit']['tokens']}: p ours {report['logit']['probability_ours']}, "
          f"circuit-tracer {report['logit']['probability_circuit_tracer']}")
    print(f"active features: ours {f['ours']} ({f['ours_at_bos']} at BOS), circuit-tracer {f['circuit_tracer']}, "
          f"common {f['common']}, only ours after BOS {f['only_ours_after_bos']}, only circuit-tracer "
          f"{f['only_circuit_tracer']}" + (f"; circuit-tracer's plain TopK would add {f['negative_in_top_k_after_bos']} "
                                          "negative activations" if "negative_in_top_k_after_bos" in f else ""))
    print(f"  activations: {s(f['activation'])}")
    print("edges (aligned: token-only embedding nodes; nodes both graphs have):")
    for k, x in e["aligned"].items():
        print(f"  {k:20s} {s(x)}")
    print(f"  unaligned embedding->feature {s(e['unaligned']['embedding->feature'])}")
    print(f"  unaligned embedding->logit   {s(e['unaligned']['embedding->logit'])}")
    print(f"  ours only (from BOS features/errors): {e['ours_only_from_bos']['share_of_all_abs']:.2%} of |edge| mass")
    print(f"influence (circuit-tracer's formula on both): top-10/20/50 feature overlap "
          f"{i['top10_overlap']:.2f}/{i['top20_overlap']:.2f}/{i['top50_overlap']:.2f}; ours at BOS in top-20: "
          f"{i['top20_ours_at_bos']}; {s(i['feature_influence'])}")
    print(f"  ours with circuit-tracer's BOS convention: {s(i['feature_influence_ours_without_bos'])}")
    print(f"pruning (0.8/0.98): ours keeps {p['ours_kept']} features ({p['ours_kept_at_bos']} at BOS), "
          f"circuit-tracer {p['circuit_tracer_kept']}, both {p['both']}, Jaccard {p['jaccard']:.2f} "
          f"({p['jaccard_after_bos']:.2f} after BOS); circuit-tracer's rule on our graph keeps {p['ct_rule_on_ours_kept']}, "
          f"Jaccard with circuit-tracer's {p['ct_rule_on_ours_vs_circuit_tracer_jaccard']:.2f} "
          f"({p['ct_rule_on_ours_after_bos_vs_circuit_tracer_jaccard']:.2f} after BOS; "
          f"{p['ct_rule_on_ours_without_bos_vs_circuit_tracer_jaccard']:.2f} with BOS sources removed)")
    o, c, j = report["links"]["ours_json"], report["links"]["ours_json_vs_circuit_tracer_adjacency"], report["links"]["json_vs_json"]
    print(f"links in our JSON: {o['links']} ({o['positive']} positive, {o['negative']} negative, {o['zero_weight']} zero); "
          f"weights = our adjacency[target, source] and links = our edge mask: {o['weights_match']} "
          f"(max|diff| {o['max_abs_diff']:.1e} of {o['max_abs']:.3g}; {o['missing_from_edge_mask']} kept edges missing, "
          f"{o['not_in_edge_mask']} extra, {o['ambiguous_ids']} with ambiguous ids)")
    for k in ("from_features_and_errors", "from_embeddings_unaligned"):
        print(f"  vs circuit-tracer's adjacency, {k:26s} {s(c.get(k, {}))}")
    print(f"  ({c['without_circuit_tracer_nodes']} links touch a node circuit-tracer lacks: BOS, or a feature it does not have)")
    print(f"  links in both JSON files: {j['both']} (ours only {j['ours_only']}, circuit-tracer only "
          f"{j['circuit_tracer_only']}; circuit-tracer's zero weights {j['circuit_tracer_zero_weight']}, "
          f"ambiguous ids {j['circuit_tracer_ambiguous_ids']})")
    for k in ("from_features_and_errors", "from_embeddings_unaligned"):
        print(f"    {k:26s} {s(j[k])}")
    print(f"viewer: our JSON valid for circuit-tracer's schema: {v['schema_valid']} ({v['nodes']} nodes, {v['links']} "
          f"links, ids unique {v['unique_node_ids']}, links resolve {v['links_resolve']}); same keys as "
          f"circuit-tracer's own file: {v['same_keys_as_circuit_tracer']}; served {v['served']}; listed {v['listed_slugs']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["export", "check"])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--transcoders", type=Path, default=None,
                    help="export step: a transcoder set folder (default: the shipped set)")
    ap.add_argument("--port", type=int, default=8032, help="loopback port for the viewer check (check step)")
    args = ap.parse_args(argv)
    if args.step == "export":
        export(args.out, args.transcoders)
    else:
        report = check(args.out, args.port)
        _print(report)
        if not report["links"]["ours_json"]["weights_match"]:
            print("✗ our JSON's link weights are not our adjacency[target, source] on the kept edges", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
