"""What chapter 4 states about the course model, computed from the model itself.

Each function returns the numbers the chapter prints and the tests assert; none is typed in.
"""

from __future__ import annotations


import torch

from course.editing import edit_prompts, edit_requests, edit_scores, finetune_edit, right_before, rome_edit
from course.neurons import agreement_by_layer, describe_neuron
from course.tracing import BUCKETS


def clearest_neurons(model, stream, acts, per_layer: int = 2, k: int = 20) -> list:
    """Per layer, the ``per_layer`` neurons whose top ``k`` contexts share one token and one kind
    of document the most (ranked by the product of the two shares): the easiest to describe."""
    out = []
    for layer in range(acts.shape[0]):
        ds = [describe_neuron(model, stream, acts[layer], layer, n, k) for n in range(acts.shape[-1])]
        ds.sort(key=lambda d: (-d.token_share * d.kind_share, d.neuron))
        out += ds[:per_layer]
    return out


def key_value_agreement_summary(model, acts, tokens, k_contexts: int = 10, k_tokens: int = 10,
                                n_null: int = 50) -> dict:
    """Agreement per layer against a null of ``n_null`` shuffled pairings (a permutation test),
    each layer's share of active neurons (post-GELU > 0), and whether the last layer agrees more
    than the first. A layer is above chance when its p-value is below 0.05."""
    a = agreement_by_layer(model, acts, tokens, k_contexts, k_tokens, n_null=n_null)
    return {**a, "above_chance": [p < 0.05 for p in a["p_value"]], "n_null": n_null,
            "active": [float((acts[layer] > 0).float().mean()) for layer in range(acts.shape[0])],
            "upper_agrees_more": a["agreement"][-1] > a["agreement"][0],
            "best_layer": max(range(len(a["agreement"])), key=a["agreement"].__getitem__)}


def agreement_report(a: dict) -> list[str]:
    """The lines chapter 4 prints for :func:`key_value_agreement_summary`."""
    floor = 1 / (1 + a["n_null"])          # the smallest p-value the shuffles can give
    lines = [f"layer {layer}: agreement {x:.4f}   chance {b:.4f} (95% of {a['n_null']} shuffles below {hi:.4f})   "
             + (f"p <= {p:.3f} (no shuffle reached it)" if p <= floor + 1e-12 else f"p = {p:.3f}")
             + f"   activations > 0: {act:.1%}"
             for layer, (x, b, hi, p, act) in enumerate(zip(a["agreement"], a["baseline"], a["null_high"],
                                                            a["p_value"], a["active"]))]
    above = [i for i, ok in enumerate(a["above_chance"]) if ok]
    not_above = [i for i, ok in enumerate(a["above_chance"]) if not ok]
    lines.append(f"above chance (p < 0.05): layers {above or 'none'}"
                 + (f"; not distinguishable from chance: layers {not_above}" if not_above else ""))
    for i in not_above:
        if a["active"][i] < 0.01:
            lines.append(f"layer {i}'s MLP is almost silent (only {a['active'][i]:.2%} of its neurons' activations "
                         "on the stream are above 0), so its neurons' top contexts say little")
    lines.append(f"the last layer agrees {'more' if a['upper_agrees_more'] else 'less'} than the first "
                 f"({'as' if a['upper_agrees_more'] else 'unlike'} Geva et al.'s upper layers)")
    return lines


@torch.no_grad()
def neuron_attribution_summary(model, traced_facts, top: int = 10) -> dict:
    """Direct logit attribution of every neuron to each fact's answer (last position, final layer
    norm frozen): how much of the neurons' total positive attribution the ``top`` largest carry,
    and which layer's neurons write most of it."""
    shares, by_layer = [], torch.zeros(model.cfg.n_layers)
    names = [f"blocks.{l}.mlp.hook_post" for l in range(model.cfg.n_layers)] + ["ln_final.hook_scale"]
    for f in traced_facts:
        _, cache = model.run_with_cache(f.tokens, names_filter=names)
        post = torch.stack([cache["post", l][0, -1] for l in range(model.cfg.n_layers)])      # [layer, d_mlp]
        direction = model.W_U[:, f.answer] * model.ln_final_w                                  # [d_model]
        centred = direction - direction.mean()        # centring a write = centring the direction
        attr = post * (model.W_out @ centred) / cache["ln_final.hook_scale"][0, -1]           # [layer, d_mlp]
        positive = attr.clamp(min=0)
        shares.append(float(positive.flatten().topk(top).values.sum() / positive.sum()))
        by_layer += positive.sum(-1).cpu() / positive.sum().cpu()
    by_layer /= len(traced_facts)
    return {"top_share": sum(shares) / len(shares), "top": top, "by_layer": by_layer.tolist(),
            "main_layer": int(by_layer.argmax()), "d_mlp": model.cfg.d_mlp}


def recall_location(average) -> dict:
    """Where the averaged causal traces peak (``average``: a :class:`course.tracing.TraceAverage`).

    ``mlp_layer_at_subject``: the MLP whose restoring at the subject's last token brings back the
    most; ``mlp_peak``: (layer, bucket) of the largest MLP effect anywhere; ``attn_layer_at_end``:
    the attention layer that, restored at the last token, brings back the most.
    """
    mlp, attn, resid = (average.recovered[k] for k in ("mlp", "attn", "resid"))
    subj, end = BUCKETS.index("subject, last"), BUCKETS.index("last token")
    layer, bucket = divmod(int(mlp.argmax()), mlp.shape[1])
    return {"mlp_layer_at_subject": int(mlp[:, subj].argmax()), "mlp_at_subject": float(mlp[:, subj].max()),
            "mlp_peak": (layer, BUCKETS[bucket]), "mlp_peak_value": float(mlp.max()),
            "attn_layer_at_end": int(attn[:, end].argmax()), "attn_at_end": float(attn[:, end].max()),
            "resid_at_subject": [float(x) for x in resid[:, subj]], "resid_at_end": [float(x) for x in resid[:, end]],
            "recalled_at_subject": BUCKETS[bucket] == "subject, last",
            # Restoring attention at the end brings most of the answer back: attention carries the subject there.
            "moved_by_attention": float(attn[:, end].max()) > 0.5}


ESSENCE_KL = 0.0625     # ROME's weight on the essence-preservation KL term


def edit_comparison(model, layer: int, C, n_edits: int = 5, seed: int = 0,
                    progress: bool = True) -> dict[str, dict[str, float]]:
    """Mean efficacy, generalization, specificity and same-subject scores of ROME and of
    fine-tuning the same weights, over ``n_edits`` edits (each undone before the next). A text
    progress bar counts the edits when they take more than a second."""
    from tqdm import tqdm

    totals = {"rome": {}, "rome + KL": {}, "fine-tuning": {}}
    for request in tqdm(edit_requests(model, n_edits, seed=seed), desc="edits", delay=1.0, disable=not progress,
                        leave=False):
        prompts = edit_prompts(model, request)
        before = right_before(model, prompts)
        for name, make in (("rome", lambda: rome_edit(model, layer, request, C)),
                           ("rome + KL", lambda: rome_edit(model, layer, request, C, kl_weight=ESSENCE_KL)),
                           ("fine-tuning", lambda: finetune_edit(model, layer, request))):
            edit = make().apply(model)
            try:
                scores = edit_scores(model, request, prompts, before)
            finally:
                edit.undo(model)
            for k, v in scores.items():
                totals[name][k] = totals[name].get(k, 0.0) + v / n_edits
    return totals


def same_subject_verdict(comparison: dict) -> str:
    """What chapter 4 prints about the edited country's other facts after each kind of edit."""
    kept_r, kept_f = comparison["rome"]["same_subject"], comparison["fine-tuning"]["same_subject"]
    text = (f"same subject: of the edited country's other facts the model knew, {kept_r:.0%} stay right after ROME "
            f"and {kept_f:.0%} after fine-tuning")
    if kept_r < 0.5 and kept_r < kept_f:
        text += (": ROME's edit moves the subject's other facts with it — it rewrites what the subject's key "
                 "stands for, not only the one fact")
    if "rome + KL" in comparison:
        kept_kl = comparison["rome + KL"]["same_subject"]
        eff_kl, eff = comparison["rome + KL"]["efficacy"], comparison["rome"]["efficacy"]
        text += (f". With ROME's essence term (KL on \"<subject> is a\", weight {ESSENCE_KL}) {kept_kl:.0%} stay "
                 f"right (efficacy {eff_kl:.2f} against {eff:.2f} without it)"
                 + (": the term keeps more of the subject" if kept_kl > kept_r + 0.05 else
                    ": the term changes little here" if abs(kept_kl - kept_r) <= 0.05 else
                    ": the term keeps less of the subject here"))
    return text
