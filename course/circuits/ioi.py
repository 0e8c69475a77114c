"""Find and measure the IOI circuit's classes of heads in a model (Wang et al. 2022's classes).

    python -m course.circuits.ioi [PATH]

Heads are *identified* on the validation families and every figure is *measured* on
the test families (course.data.ioi.SPLITS), each with its "ABC" counterpart (a third
name at S2). The classes, as GPT-2 small has them:

- **name movers**: attend from the end to IO (≥ ``NM_ATTENTION``) and raise logit(IO) −
  logit(S) directly; figure: the share of the logit difference their direct effects make;
- **S-inhibition heads**: attend from the end to S2 and change the name movers' queries;
  figure: the share of the logit difference removed by patching their ABC output into
  the name movers' queries only (path patching);
- **subject-suppression heads** (not one of Wang et al.'s classes; GPT-2 small's
  copy-suppression heads, McDougall et al. 2023, act alike): attend from the end to S2
  (≥ ``NM_ATTENTION``) and raise logit(IO) − logit(S) directly, by pushing S down;
  figure: the share of the logit difference their direct effects make;
- **duplicate-token / induction heads**: attend from S2 to S1 / S1+1; figure: the share
  removed by patching their ABC output into the keys and values of the heads that attend
  to S2 from the end (the S-inhibition and subject-suppression heads) only;
- **faithfulness**: mean-ablating (over the ABC prompts of the same sentence shape) every
  head outside the circuit keeps a share of the logit difference; ablating the circuit's
  heads leaves a share.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import torch

from course.data.ioi_dataset import IOIDataset, ioi_dataset
from course.patching import group_mean, logit_diff, normalized, patch_heads, path_patch

Head = tuple[int, int]

NM_ATTENTION = 0.4          # the definition of a name mover
S_INHIBITION_ATTENTION = 0.1  # attends to S2 at least this much from the end
DUPLICATE_ATTENTION = 0.3   # attends from S2 to S1 (or S1+1) at least this much
MIN_SINGLE_EFFECT = 0.03    # a single head's path-patching effect that admits it to its class

CIRCUIT_TARGETS = {
    "name_mover_share": (">=", 0.5),
    "s_inhibition_removed": (">=", 0.3),
    "duplicate_removed": (">=", 0.15),
    "outside_ablated_kept": (">=", 0.8),
    "circuit_ablated_left": ("<=", 0.2),
}


# The figure (on the test families) that each class must pass; a class not listed is named by its
# definition alone.
CLASS_TESTS = {"name_movers": "name_mover_share", "s_inhibition": "s_inhibition_removed",
               "duplicate_token": "duplicate_removed", "induction": "duplicate_removed"}


@dataclass
class CircuitReport:
    name_movers: list[Head] = field(default_factory=list)
    s_inhibition: list[Head] = field(default_factory=list)
    subject_suppression: list[Head] = field(default_factory=list)
    duplicate_token: list[Head] = field(default_factory=list)
    induction: list[Head] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    identified_on: str = "validation"
    measured_on: str = "test"

    @property
    def heads(self) -> list[Head]:
        return sorted(set(self.name_movers + self.s_inhibition + self.subject_suppression
                          + self.duplicate_token + self.induction))

    @property
    def s2_readers(self) -> list[Head]:
        """The heads that read S2 from the end: where duplicate-token signals are sent."""
        return sorted(set(self.s_inhibition + self.subject_suppression))

    def meets(self, name: str) -> bool:
        op, floor = CIRCUIT_TARGETS[name]
        v = self.figures[name]
        return v >= floor if op == ">=" else v <= floor

    def passes(self, cls: str) -> bool:
        """Whether class ``cls`` (e.g. ``"name_movers"``) has heads and they pass its test."""
        return bool(getattr(self, cls)) and (cls not in CLASS_TESTS or self.meets(CLASS_TESTS[cls]))

    def candidates(self, cls: str) -> list[Head]:
        """The heads named for ``cls`` on the validation families that fail its test: not the class."""
        return [] if self.passes(cls) else list(getattr(self, cls))

    def class_line(self, cls: str) -> str:
        """The heads of ``cls`` if they pass its test; else the candidates and the figure they fail."""
        fmt = lambda hs: ", ".join(f"L{l}H{h}" for l, h in hs)             # noqa: E731
        if self.passes(cls):
            return fmt(getattr(self, cls))
        if not getattr(self, cls):
            return "none"
        test = CLASS_TESTS[cls]
        op, floor = CIRCUIT_TARGETS[test]
        return (f"none pass (candidates {fmt(getattr(self, cls))} fail the test: {test} "
                f"{self.figures[test]:.3f}, needs {op} {floor})")

    def table(self) -> str:
        lines = [f"name movers:         {self.class_line('name_movers')}",
                 f"S-inhibition:        {self.class_line('s_inhibition')}",
                 f"subject-suppression: {self.class_line('subject_suppression')}",
                 f"duplicate-token:     {self.class_line('duplicate_token')}",
                 f"induction:           {self.class_line('induction')}"]
        for k, v in self.figures.items():
            ok = ("yes" if self.meets(k) else "NO") if k in CIRCUIT_TARGETS else ""
            target = " ".join(map(str, CIRCUIT_TARGETS[k])) if k in CIRCUIT_TARGETS else ""
            lines.append(f"{k:34s} {v:9.3f}  {target:7s}  {ok}")
        return "\n".join(lines)


@dataclass
class Runs:
    """The clean and ABC runs of a dataset, with what every measurement needs."""

    data: IOIDataset
    clean_cache: object
    abc_cache: object
    ld_clean: float
    ld_abc: float

    def ld(self, logits) -> float:
        d = self.data
        return float(logit_diff(logits, d.end_pos, d.io_tok, d.s_tok).mean())

    def removed(self, logits) -> float:
        """Share of the clean logit difference removed (1 − the normalized metric)."""
        return 1.0 - float(normalized(self.ld(logits), self.ld_clean, self.ld_abc))


_CACHED = ("attn.hook_z", "attn.hook_pattern", "hook_resid_pre", "ln_final.hook_scale", "hook_mlp_out",
           "hook_embed", "hook_pos_embed")


@torch.no_grad()
def runs(model, data: IOIDataset) -> Runs:
    keep = lambda n: n.endswith(_CACHED)                                         # noqa: E731
    clean_logits, clean_cache = model.run_with_cache(data.clean, names_filter=keep)
    abc_logits, abc_cache = model.run_with_cache(data.abc, names_filter=keep)
    r = Runs(data, clean_cache, abc_cache, 0.0, 0.0)
    r.ld_clean, r.ld_abc = r.ld(clean_logits), r.ld(abc_logits)
    return r


@torch.no_grad()
def head_statistics(model, r: Runs) -> dict[str, torch.Tensor]:
    """Per head ``[layer, head]``: mean attention end→IO, end→S2, end→S1, S2→S1, S2→S1+1,
    and the mean direct effect on logit(IO) − logit(S) through the final layer norm."""
    d, n = r.data, len(r.data)
    rows = torch.arange(n, device=d.clean.device)
    stats = {k: [] for k in ("end_to_io", "end_to_s2", "end_to_s1", "s2_to_s1", "s2_to_s1_plus_1", "direct_effect")}
    scale = r.clean_cache["ln_final.hook_scale"][rows, d.end_pos]                   # [n, 1]
    direction = (model.W_U[:, d.io_tok] - model.W_U[:, d.s_tok]).T                   # [n, d_model]
    for layer in range(model.cfg.n_layers):
        p = r.clean_cache["pattern", layer]                                          # [n, head, q, k]
        at = lambda q, k: p[rows, :, q, k].mean(0)                                   # noqa: E731
        stats["end_to_io"].append(at(d.end_pos, d.io_pos))
        stats["end_to_s2"].append(at(d.end_pos, d.s2_pos))
        stats["end_to_s1"].append(at(d.end_pos, d.s1_pos))
        stats["s2_to_s1"].append(at(d.s2_pos, d.s1_pos))
        stats["s2_to_s1_plus_1"].append(at(d.s2_pos, d.s1_pos + 1))
        z = r.clean_cache["z", layer][rows, d.end_pos]                               # [n, head, d_head]
        out = torch.einsum("nhd,hdm->nhm", z, model.W_O[layer])                      # [n, head, d_model]
        out = (out - out.mean(-1, keepdim=True)) / scale[:, None] * model.ln_final_w
        stats["direct_effect"].append((out * direction[:, None]).sum(-1).mean(0))
    return {k: torch.stack(v).cpu() for k, v in stats.items()}


def _heads_where(mask: torch.Tensor) -> list[Head]:
    return [(int(l), int(h)) for l, h in mask.nonzero().tolist()]


def _z(cache, model) -> dict[int, torch.Tensor]:
    return {l: cache["z", l] for l in range(model.cfg.n_layers)}


@torch.no_grad()
def identify(model, r: Runs) -> CircuitReport:
    """Name the classes on one dataset (the validation families)."""
    st = head_statistics(model, r)
    layer_ix = torch.arange(model.cfg.n_layers)[:, None].expand_as(st["end_to_io"])
    rep = CircuitReport()
    positive = (st["direct_effect"] > 0) & (layer_ix >= 1)
    rep.name_movers = _heads_where((st["end_to_io"] >= NM_ATTENTION) & positive)
    rep.subject_suppression = [h for h in _heads_where((st["end_to_s2"] >= NM_ATTENTION) & positive)
                               if h not in rep.name_movers]
    if rep.name_movers:
        nm_last = max(l for l, _ in rep.name_movers)
        cands = _heads_where((st["end_to_s2"] >= S_INHIBITION_ATTENTION) & (layer_ix < nm_last))
        rep.s_inhibition = [h for h in cands if h not in rep.name_movers and r.removed(
            path_patch(model, r.data.clean, r.clean_cache, r.abc_cache, [h], rep.name_movers, "q")) >= MIN_SINGLE_EFFECT]
    readers = rep.s2_readers
    if not readers:
        return rep
    last = max(l for l, _ in readers)
    for name, key in (("duplicate_token", "s2_to_s1"), ("induction", "s2_to_s1_plus_1")):
        cands = _heads_where((st[key] >= DUPLICATE_ATTENTION) & (layer_ix < last))
        setattr(rep, name, [h for h in cands if r.removed(
            path_patch(model, r.data.clean, r.clean_cache, r.abc_cache, [h], readers, ("k", "v")))
            >= MIN_SINGLE_EFFECT])
    return rep


@torch.no_grad()
def measure(model, r: Runs, rep: CircuitReport) -> dict[str, float]:
    """The class figures for heads named in ``rep``, on the runs ``r`` (the test families)."""
    st = head_statistics(model, r)
    f = {"logit_diff_clean": r.ld_clean, "logit_diff_abc": r.ld_abc}
    mean_io = lambda hs, key: float(torch.stack([st[key][h] for h in hs]).mean()) if hs else float("nan")  # noqa: E731
    f["name_mover_attention_to_io"] = mean_io(rep.name_movers, "end_to_io")
    f["name_mover_share"] = sum(float(st["direct_effect"][h]) for h in rep.name_movers) / r.ld_clean
    f["subject_suppression_share"] = sum(float(st["direct_effect"][h]) for h in rep.subject_suppression) / r.ld_clean
    clean = r.data.clean
    f["s_inhibition_removed"] = (r.removed(path_patch(model, clean, r.clean_cache, r.abc_cache, rep.s_inhibition,
                                                      rep.name_movers, "q")) if rep.s_inhibition else 0.0)
    dup = rep.duplicate_token + [h for h in rep.induction if h not in rep.duplicate_token]
    f["duplicate_removed"] = (r.removed(path_patch(model, clean, r.clean_cache, r.abc_cache, dup,
                                                   rep.s2_readers, ("k", "v"))) if dup and rep.s2_readers else 0.0)
    means = {l: group_mean(z, r.data.group) for l, z in _z(r.abc_cache, model).items()}
    circuit = set(rep.heads)
    outside = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads) if (l, h) not in circuit]
    f["outside_ablated_kept"] = r.ld(patch_heads(model, clean, outside, means)) / r.ld_clean
    f["circuit_ablated_left"] = r.ld(patch_heads(model, clean, sorted(circuit), means)) / r.ld_clean
    return f


def ioi_circuit(model, n_groups: int = 24, per_group: int = 8) -> CircuitReport:
    """Identify the classes on the validation families, measure them on the test families."""
    rep = identify(model, runs(model, ioi_dataset(model, "validation", n_groups, per_group, seed=1)))
    rep.figures = measure(model, runs(model, ioi_dataset(model, "test", n_groups, per_group, seed=0)), rep)
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="course-gpt2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from course import load_model

    rep = ioi_circuit(load_model(args.path, device="cpu"))
    print(json.dumps(asdict(rep), indent=2) if args.json else rep.table())
    return 0 if all(rep.meets(k) for k in CIRCUIT_TARGETS) else 1


if __name__ == "__main__":
    sys.exit(main())
