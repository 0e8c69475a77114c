"""How a GPT-2 adds two-digit numbers: batches of "calc: a + b = s" lines, accuracy by case,
attention to the operand digits, digit patching, a carry probe and heuristic neuron classes.

    from course.arithmetic import addition_batch, accuracy_by_case, fit_probe
    batch = addition_batch(model, held_out_addition_prompts("test"))
"""

from course.arithmetic.attribution import digit_attribution
from course.arithmetic.batch import OPERAND_DIGITS, AdditionBatch, addition_batch, answer_correct
from course.arithmetic.cases import accuracy_by_case, failures
from course.arithmetic.heuristics import (VARIABLES, classify_neurons, explained_variance, grid_activations,
                                          important_neurons, ablate_neurons)
from course.arithmetic.operands import digit_patching, operand_attention
from course.arithmetic.probe import carry_labels, fit_probe, probe_accuracy, probe_grid, ablate_direction, residuals

__all__ = ["digit_attribution", "OPERAND_DIGITS", "AdditionBatch", "addition_batch", "answer_correct", "accuracy_by_case", "failures",
           "VARIABLES", "classify_neurons", "explained_variance", "grid_activations", "important_neurons",
           "ablate_neurons", "digit_patching", "operand_attention", "carry_labels", "fit_probe", "probe_accuracy",
           "probe_grid", "ablate_direction", "residuals"]
