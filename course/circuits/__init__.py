"""What heads do, read from their weights and their attention.

- :mod:`course.circuits.weights`: QK and OV circuits of a head, kept factored, and
  composition scores between heads;
- :mod:`course.circuits.detectors`: previous-token, current-token, first-token and
  induction scores from attention patterns;
- :mod:`course.circuits.ioi`: the IOI circuit's classes of heads, found and measured.

    from course import circuits
    circuits.ov(model, layer, head).eigenvalues()
"""

from course.circuits.detectors import DETECTORS, all_detector_scores, detector_scores, induction_scores
from course.circuits.weights import (composition_scores, effective_embedding, ov, positional_qk, qk, through_ln1,
                                     token_qk)

__all__ = ["DETECTORS", "all_detector_scores", "detector_scores", "induction_scores", "composition_scores", "effective_embedding", "ov",
           "positional_qk", "qk", "through_ln1", "token_qk"]
