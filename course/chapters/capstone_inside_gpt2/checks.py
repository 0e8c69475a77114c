"""Checks for the capstone, "Inside GPT-2".

The capstone's tools are the student's own functions from chapters 1 and 2, pasted in: their
checks are those chapters' checks, unchanged (same cases, same named mistakes, same hidden
tests). On the student's own prompt, :func:`on_your_prompt` compares a result with the
toolkit's, and :func:`use_prompt` says what the model does with the prompt.

    from course.chapters.capstone_inside_gpt2 import checks as check
    check.logit_lens(logit_lens)
"""

from __future__ import annotations

import torch

from course.chapters.ch1_residual_stream.checks import EXERCISES as CHAPTER_1
from course.chapters.ch2_qk_ov_circuits.checks import EXERCISES as CHAPTER_2
from course.checks.core import compare, exercise_functions

REUSED = {"ch1_residual_stream": ["layer_norm", "attention_layer", "mlp_layer", "forward_from_weights", "logit_lens",
                                  "logit_diff_direction", "component_attribution"],
          "ch2_qk_ov_circuits": ["attention_scores", "attention_pattern", "ov_circuit"]}

EXERCISES = {**{name: CHAPTER_1[name] for name in REUSED["ch1_residual_stream"]},
             **{name: CHAPTER_2[name] for name in REUSED["ch2_qk_ov_circuits"]}}

globals().update(exercise_functions(EXERCISES))


def use_prompt(model, prompt: str, answer: str, counterfactual: str):
    """Check the prompt of your choice and say what the model does with it. Returns
    ``(tokens [1, pos], answer id, counterfactual id)``, or None (with the reason printed)."""
    problems = []
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("PROMPT must be a non-empty string")
    ids = {}
    for name, text in (("ANSWER", answer), ("COUNTERFACTUAL", counterfactual)):
        try:
            ids[name] = model.to_single_token(text)
        except Exception:
            problems.append(f"{name} {text!r} is not one token of this model's vocabulary (names, digits and common "
                            "words with a leading space usually are: ' Mary', ' 9', ' store')")
    if not problems:
        tokens = model.to_tokens(prompt)
        if tokens.shape[1] > model.cfg.n_ctx:
            problems.append(f"the prompt is {tokens.shape[1]} tokens; this model reads at most {model.cfg.n_ctx}")
    if problems:
        print("✗ " + "; ".join(problems) + ". Change the cell above and run it again.")
        return None
    logits = model(tokens)[0, -1]
    top = [model.to_string(int(i)) for i in logits.topk(5).indices]
    diff = float(logits[ids["ANSWER"]] - logits[ids["COUNTERFACTUAL"]])
    rank = int((logits > logits[ids["ANSWER"]]).sum()) + 1
    print(f"✓ {tokens.shape[1]} tokens. The model's top five next tokens: {top}; {answer!r} ranks {rank}; "
          f"logit({answer!r}) − logit({counterfactual!r}) = {diff:+.2f}"
          + ("" if diff > 0 else " (the model prefers the counterfactual: a finding can start there too)"))
    return tokens, torch.tensor([ids["ANSWER"]]), torch.tensor([ids["COUNTERFACTUAL"]])


def on_your_prompt(what: str, yours, toolkit, atol: float = 1e-3, rtol: float = 1e-3) -> bool:
    """Compare your result on your prompt with the toolkit's; one line, never raises."""
    try:
        got = yours.detach().cpu() if torch.is_tensor(yours) else yours
        why = compare(got, toolkit.detach().cpu(), atol, rtol)
    except Exception as e:            # a student's function may return anything
        why = f"could not compare ({type(e).__name__}: {e})"
    print(f"✓ your {what} on your prompt agrees with the toolkit's" if why is None
          else f"✗ your {what} on your prompt differs from the toolkit's: {why}")
    return why is None


def yours(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or None with one line saying why (a stub not yet pasted, an error)."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        print(f"… {name} is not pasted in yet: paste your chapter's version in its cell above and run it")
    except Exception as e:         # the student's error, in one line; the notebook goes on
        print(f"✗ {name} raised {type(e).__name__}: {e}")
    return None
