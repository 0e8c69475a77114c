"""The baseline ROME is compared with: fine-tune the same weights on the one new sentence."""

from __future__ import annotations

import torch

from course.editing.rome import Edit, EditRequest


def finetune_edit(model, layer: int, request: EditRequest, steps: int = 50, lr: float = 1e-3,
                  stop_at: float = 0.9) -> Edit:
    """Adam on a change ``ΔW`` to ``W_out[layer]`` alone, minimizing the new answer's loss on
    ``request.prompt`` until its probability there passes ``stop_at`` (a fair fight: no more
    change than the sentence needs); returns it as an :class:`Edit` (the model's weights are not touched:
    the change enters through hooks, ``mlp_out += post @ ΔW``)."""
    target = model.to_single_token(request.new_answer)
    tokens = model.to_tokens(request.prompt)
    delta = torch.zeros_like(model.W_out[layer], requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    post = {}

    def keep(x, hook):
        post["x"] = x

    def add(x, hook):
        return x + post["x"] @ delta

    hooks = [(f"blocks.{layer}.mlp.hook_post", keep), (f"blocks.{layer}.hook_mlp_out", add)]
    params = list(model.hf.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                logp = model.run_with_hooks(tokens, hooks)[0, -1].log_softmax(-1)[target]
                if float(logp.detach().exp()) > stop_at:
                    break
                loss = -logp
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return Edit(layer, delta.detach())
