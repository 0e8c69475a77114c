"""Attribution graphs: the direct effect of every node on every later node, by backward passes.

Nodes, in this order (circuit-tracer's): active features (layer, pos, feature), error nodes
(layer, pos), token embeddings (pos), output logits. In the local replacement model with the
feature activations frozen, each target (a feature's pre-activation, or a logit minus the mean
logit) is an affine function of the sources' writes, so

    target = (value with every source removed) + sum over sources of adjacency[target, source]

exactly, where an edge is the source's write (activation x decoder row, error vector or
embedding) dotted with the gradient of the target at the place the source writes. One
backward pass per target gives a whole row; targets are batched along a leading dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from course.attribution.replacement import LocalReplacement


@dataclass
class AttributionGraph:
    prompt_tokens: list[str]
    tokens: Tensor                  # [pos]
    active: Tensor                  # [n_features, 3]: (layer, pos, feature index)
    activation_values: Tensor       # [n_features]
    logit_tokens: Tensor            # [n_logits]
    logit_probabilities: Tensor     # [n_logits]
    adjacency: Tensor               # [n_nodes, n_nodes]: adjacency[target, source]
    n_layers: int
    target_values: Tensor = field(default=None)     # [n_nodes]: each target's value (0 for sources)
    bias_values: Tensor = field(default=None)       # [n_nodes]: the same with every source removed

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.active)

    @property
    def n_nodes(self) -> int:
        return self.adjacency.shape[0]

    def slices(self) -> dict[str, slice]:
        f, e, t = self.n_features, self.n_layers * self.n_pos, self.n_pos
        return {"feature": slice(0, f), "error": slice(f, f + e), "embedding": slice(f + e, f + e + t),
                "logit": slice(f + e + t, self.n_nodes)}

    def kind(self, node: int) -> str:
        return next(k for k, s in self.slices().items() if s.start <= node < s.stop)

    def describe(self, node: int) -> dict:
        """A node as a dict: kind, layer ("E" for embeddings, n_layers for logits), pos, and index."""
        kind, s = self.kind(node), self.slices()
        if kind == "feature":
            layer, pos, idx = self.active[node].tolist()
            return {"kind": kind, "layer": layer, "pos": pos, "feature": idx,
                    "activation": float(self.activation_values[node])}
        if kind == "error":
            layer, pos = divmod(node - s["error"].start, self.n_pos)
            return {"kind": kind, "layer": layer, "pos": pos}
        if kind == "embedding":
            pos = node - s["embedding"].start
            return {"kind": kind, "layer": "E", "pos": pos, "token": int(self.tokens[pos])}
        i = node - s["logit"].start
        return {"kind": kind, "layer": self.n_layers, "pos": self.n_pos - 1, "token": int(self.logit_tokens[i]),
                "probability": float(self.logit_probabilities[i])}

    def label(self, node: int) -> str:
        d = self.describe(node)
        where = f"@{d['pos']}:{self.prompt_tokens[d['pos']]!r}"
        if d["kind"] == "feature":
            return f"L{d['layer']}/F{d['feature']} {where}"
        if d["kind"] == "error":
            return f"L{d['layer']} error {where}"
        if d["kind"] == "embedding":
            return f"embed {where}"
        return f"logit {d['token']} (p={d['probability']:.2f})"

    def node_index(self, kind: str, layer: int | None = None, pos: int | None = None, feature: int | None = None) -> int:
        """The node's row/column in ``adjacency``."""
        s = self.slices()[kind]
        if kind == "feature":
            hit = ((self.active[:, 0] == layer) & (self.active[:, 1] == pos) & (self.active[:, 2] == feature)).nonzero()
            if len(hit) == 0:
                raise KeyError(f"feature {feature} of layer {layer} is not active at position {pos}")
            return int(hit[0, 0])
        if kind == "error":
            return s.start + layer * self.n_pos + pos
        if kind == "embedding":
            return s.start + pos
        return s.start + (0 if feature is None else int((self.logit_tokens == feature).nonzero()[0, 0]))


def _target_values(out: dict, kinds: list, enc: Tensor, enc_bias: Tensor, logit_dirs: Tensor) -> Tensor:
    """Values of a batch of targets, one per leading index ``b`` of ``out``."""
    vals = []
    for b, (kind, a, c) in enumerate(kinds):
        if kind == "feature":        # a: layer, c: (pos, row of enc)
            pos, row = c
            vals.append(out["mlp_in"][a, b, pos] @ enc[row] + enc_bias[row])
        else:                        # a: row of logit_dirs
            logits = out["logits"][b, -1]
            vals.append(logits @ logit_dirs[a])
    return torch.stack(vals)


def attribute(rep: LocalReplacement, logit_tokens=None, max_logits: int = 1, demean: bool = True,
              batch_size: int = 128) -> AttributionGraph:
    """The attribution graph of ``rep``'s prompt, for the last position's logits.

    ``logit_tokens``: the output tokens to explain (default: the ``max_logits`` most likely).
    A logit target is the token's logit minus the mean logit (``demean``; a softmax cannot see a
    shift of every logit) — the same direction as ``W_U[:, t] - W_U.mean(1)``. A feature target is
    its pre-activation: what its encoder reads, before the activation function.
    """
    model, L, P = rep.model, rep.n_layers, rep.n_pos
    probs = rep.logits[-1].softmax(-1)
    if logit_tokens is None:
        logit_tokens = probs.topk(max_logits).indices
    logit_tokens = torch.as_tensor(logit_tokens, device=probs.device).reshape(-1)
    active = (rep.activations > 0).nonzero()                        # sorted by (layer, pos, feature)
    values = rep.activations[active[:, 0], active[:, 1], active[:, 2]]
    with torch.no_grad():
        dec = torch.stack([rep.transcoders[l].W_dec[i] for l, _, i in active.tolist()]) * values[:, None] \
            if len(active) else torch.zeros(0, model.cfg.d_model)
        enc = torch.stack([rep.transcoders[l].W_enc[:, i] for l, _, i in active.tolist()]) \
            if len(active) else torch.zeros(0, model.cfg.d_model)
        enc_bias = torch.stack([rep.transcoders[l].b_enc[i] for l, _, i in active.tolist()]) \
            if len(active) else torch.zeros(0)
        eye = torch.eye(model.cfg.d_vocab, device=probs.device)[logit_tokens]
        logit_dirs = eye - 1 / model.cfg.d_vocab if demean else eye               # on the logits: [n_logits, vocab]
        embed = rep.embedding().detach()
        writes = rep.mlp_writes().detach()
    n_f, n_e = len(active), L * P
    n = n_f + n_e + P + len(logit_tokens)
    adjacency = torch.zeros(n, n)
    targets = [("feature", l, (p, row)) for row, (l, p, _) in enumerate(active.tolist())] + \
              [("logit", j, None) for j in range(len(logit_tokens))]
    rows = list(range(n_f)) + list(range(n - len(logit_tokens), n))
    target_values = torch.zeros(n)
    for start in range(0, len(targets), batch_size):
        chunk, chunk_rows = targets[start:start + batch_size], rows[start:start + batch_size]
        B = len(chunk)
        e = embed.expand(B, P, -1).clone().requires_grad_(True)
        w = writes[:, None].expand(L, B, P, -1).clone().requires_grad_(True)
        with torch.enable_grad():
            vals = _target_values(rep.forward(e, w), chunk, enc, enc_bias, logit_dirs)
            g_e, g_w = torch.autograd.grad(vals.sum(), [e, w])
        r = torch.tensor(chunk_rows)
        target_values[r] = vals.detach().cpu()
        adjacency[r, n_f + n_e:n_f + n_e + P] = (g_e * embed).sum(-1).cpu()
        adjacency[r, n_f:n_f + n_e] = (g_w * rep.errors[:, None]).sum(-1).permute(1, 0, 2).reshape(B, -1).cpu()
        if n_f:
            g_src = g_w[active[:, 0], :, active[:, 1]]                  # [n_f, B, d]
            adjacency[r, :n_f] = torch.einsum("sbd,sd->bs", g_src, dec).cpu()
    with torch.no_grad():       # every source removed: embeddings and errors zero, features off (b_dec stays)
        out = rep.forward(torch.zeros_like(embed), rep.mlp_writes(torch.zeros_like(rep.activations)) - rep.errors)
        bias_values = torch.zeros(n)
        if n_f:
            pre = torch.stack([out["mlp_in"][l, p] @ enc[row] + enc_bias[row] for row, (l, p, _) in enumerate(active.tolist())])
            bias_values[:n_f] = pre.cpu()
        bias_values[n - len(logit_tokens):] = (logit_dirs @ out["logits"][-1]).cpu()
    return AttributionGraph(rep.model.to_str_tokens(rep.tokens[0]), rep.tokens[0].cpu(), active.cpu(), values.cpu(),
                            logit_tokens.cpu(), probs[logit_tokens].cpu(), adjacency, L, target_values, bias_values)
