"""Activation patching, path patching and ablation of attention heads, on the lens.

- :mod:`course.patching.metrics`: the logit difference and the normalized patching metric;
- :mod:`course.patching.heads`: replace chosen heads' outputs (from another run, or a mean);
- :mod:`course.patching.paths`: path patching from sender heads into receivers' q, k or v;
- :mod:`course.patching.sweeps`: batched activation patching of every layer × position or head, and its
  gradient approximation (attribution patching).
"""

from course.patching.heads import group_mean, patch_heads
from course.patching.metrics import logit_diff, normalized
from course.patching.paths import path_patch, sender_names
from course.patching.sweeps import attribution_sweep, patch_sweep

__all__ = ["attribution_sweep", "patch_sweep", "group_mean", "logit_diff", "normalized", "patch_heads", "path_patch", "sender_names"]
