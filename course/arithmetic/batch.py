"""A batch of whole addition lines, "calc: 36 + 59 = 95", with where each digit sits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from course.data.addition import AdditionPrompt

# the operand digits, in the order they appear in the prompt
OPERAND_DIGITS = ("a tens", "a ones", "b tens", "b ones")


@dataclass
class AdditionBatch:
    """``tokens [n, pos]``: whole lines (prompt and answer), right-padded with the end-of-text token
    (padding after the answer changes no prediction before it). ``answer_mask [n, pos]``: the answer's
    digit tokens. ``operand_pos``: the positions of ``OPERAND_DIGITS`` (the same in every line).
    ``ones_pos [n]``, ``tens_pos [n]``: where each line's answer ones and tens digits sit; the model
    predicts each from the position before."""

    prompts: list[AdditionPrompt]
    tokens: Tensor
    answer_mask: Tensor
    operand_pos: list[int]
    ones_pos: Tensor
    tens_pos: Tensor

    @property
    def sums(self) -> Tensor:
        return torch.tensor([p.a + p.b for p in self.prompts])

    @property
    def carry(self) -> Tensor:
        return torch.tensor([p.carry for p in self.prompts])

    def select(self, rows) -> "AdditionBatch":
        """The lines ``rows`` (a slice, a bool mask or indices), same width and operand positions."""
        if isinstance(rows, slice):
            rows = torch.arange(len(self.prompts))[rows]
        elif isinstance(rows, Tensor) and rows.dtype == torch.bool:
            rows = rows.nonzero().flatten()
        rows = torch.as_tensor(rows, dtype=torch.long)
        return AdditionBatch([self.prompts[i] for i in rows.tolist()], self.tokens[rows], self.answer_mask[rows],
                             self.operand_pos, self.ones_pos[rows], self.tens_pos[rows])


def addition_batch(model, prompts: list[AdditionPrompt]) -> AdditionBatch:
    ids = model.tokenizer([p.text + p.answer for p in prompts], add_special_tokens=False)["input_ids"]
    prompt = model.to_tokens(prompts[0].text)[0].tolist()
    bos = prompt[:len(prompt) - len(model.tokenizer(prompts[0].text, add_special_tokens=False)["input_ids"])]
    rows = [torch.tensor(bos + r) for r in ids]               # as to_tokens gives them, in one tokenizer call
    prompt_len = len(prompt)
    width = max(len(r) for r in rows)
    pad = model.tokenizer.eos_token_id
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (r, p) in enumerate(zip(rows, prompts)):
        tokens[i, :len(r)] = r
        n_digits = len(str(p.a + p.b))
        mask[i, len(r) - n_digits:len(r)] = True
        if len(r) != prompt_len + 1 + n_digits:                # the prompt, a space, one token per digit
            raise ValueError(f"{p.text + p.answer!r} does not tokenize one digit per token like the other lines")
    first = model.to_str_tokens(prompts[0].text)
    digits = [i for i, t in enumerate(first) if t.strip().isdigit()]
    if len(digits) != 4:
        raise ValueError("expected one token per operand digit")
    lengths = torch.tensor([len(r) for r in rows])
    return AdditionBatch(list(prompts), tokens, mask, digits, lengths - 1, lengths - 2)


@torch.no_grad()
def answer_correct(model, batch: AdditionBatch, batch_size: int = 256, fwd_hooks=()) -> Tensor:
    """``[n, pos]``: whether the model's top next-token prediction is right, at the answer digits
    (teacher-forced: each digit predicted from the true digits before it); False elsewhere."""
    out = []
    for s in range(0, len(batch.prompts), batch_size):
        logits = model.run_with_hooks(batch.tokens[s:s + batch_size].to(model.device), list(fwd_hooks))
        pred = logits[:, :-1].argmax(-1).cpu()
        right = torch.zeros_like(batch.answer_mask[s:s + batch_size])
        right[:, 1:] = pred == batch.tokens[s:s + batch_size, 1:]
        out.append(right & batch.answer_mask[s:s + batch_size])
    return torch.cat(out)
