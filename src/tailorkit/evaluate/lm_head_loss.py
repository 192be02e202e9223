"""A causal LM's head and token loss computed a few hundred tokens at a time, so the
full-vocabulary logits of a batch never exist at once.

At batch 8 x 128 SmolLM2's logits are 8 x 128 x 49,152 floats (200 MB); the plain loss keeps
them, a shifted copy, their log-softmax and, in the backward, their gradient: most of a GB,
more than the LoRA weights by far, and it grows with the vocabulary (Llama 3: 128k).

Here the model runs with its output layer replaced by an identity (`hidden_states`), so it
returns the last hidden states. Only the positions that carry a label go through the head
(prompt tokens and padding are skipped outright), in chunks of `chunk` rows. Each chunk's
logits live only inside the loop: the loss and, when training, the gradients with respect to
the hidden states (and the head's weight, if it trains) are computed right there and kept
(rows x hidden, small), and the backward only scales them by the incoming gradient. That is the
fused linear cross-entropy of Liger-Kernel (Hsu et al. 2024); Wijmans et al. 2024 ("Cut Your
Losses in Large-Vocabulary Language Models") take the same idea further on GPUs. Computing the
gradients in the forward costs no more memory than recomputing the logits in the backward, and
one pass over the head instead of two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Config fields that change logits after the output layer (Gemma 2's soft-capping, Cohere's
# scale, Granite's divisor): such models keep the plain loss.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


def _cross_entropy_in_place(logits: torch.Tensor, targets: torch.Tensor, total: torch.Tensor,
                            gradient: bool) -> torch.Tensor:
    """Adds the summed cross-entropy of `logits` (rows x vocabulary, fp32, overwritten) to
    `total`; with `gradient`, turns the buffer into that gradient, softmax - one_hot(target):
    one vocabulary-wide tensor per chunk where F.cross_entropy and softmax write three."""
    rows = torch.arange(len(targets), device=logits.device)
    logits -= logits.amax(-1, keepdim=True)  # shifted by the row maximum: exp cannot overflow
    target = logits[rows, targets]
    sums = logits.exp_().sum(-1)
    total += (sums.log() - target).sum()  # -log softmax(target) = log sum exp - target, shifted
    if gradient:
        logits /= sums.unsqueeze(-1)
        logits[rows, targets] -= 1
    return logits


class _HeadCrossEntropy(torch.autograd.Function):
    """Summed token cross-entropy of `hidden @ weight.T + bias` against `targets`."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        gradient = need_hidden or need_weight or need_bias
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        for start in range(0, hidden.size(0), chunk):
            h, y = hidden[start:start + chunk], targets[start:start + chunk]
            logits = F.linear(h, weight, bias)  # autocast (bf16) applies here as in the model
            grad = _cross_entropy_in_place(logits.float(), y, total, gradient)
            if not gradient:
                continue
            # the matmuls run in the forward's precision (autocast casts them as it did F.linear)
            if grad_hidden is not None:
                grad_hidden[start:start + chunk] = grad @ weight
            if grad_weight is not None:
                grad_weight += (grad.T @ h).float()
            if grad_bias is not None:
                grad_bias += grad.float().sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_total.float()
        return (None if grad_hidden is None else grad_hidden * scale.to(grad_hidden.dtype),
                None if grad_weight is None else (grad_weight * scale).to(ctx.weight_dtype),
                None if grad_bias is None else grad_bias * scale,
                None, None)


class ChunkedLMLoss:
    """The token loss of a causal LM from its last hidden states and its output layer."""

    def __init__(self, head: nn.Linear, chunk: int) -> None:
        self.head, self.chunk = head, chunk

    @classmethod
    def for_model(cls, model: nn.Module, chunk: int) -> ChunkedLMLoss | None:
        """None where the plain loss must stay: chunking off, an output layer that is not a
        plain Linear (adapted, quantised) or logits transformed after it."""
        head = model.get_output_embeddings() if chunk else None
        config = getattr(model, "config", None)
        if type(head) is not nn.Linear or any(getattr(config, k, None) for k in LOGIT_TRANSFORMS):
            return None
        return cls(head, chunk)

    def sum_and_count(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss over the labelled positions (position t predicts token t + 1) and their count."""
        if hidden.size(1) > labels.size(1):  # prompt tuning's virtual tokens come first
            hidden = hidden[:, hidden.size(1) - labels.size(1):]
        targets = labels[:, 1:]
        keep = targets != -100
        rows = hidden[:, :-1][keep]  # only supervised positions reach the head
        total = _HeadCrossEntropy.apply(rows, self.head.weight, self.head.bias, targets[keep], self.chunk)
        return total, keep.sum()

    def __call__(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total, count = self.sum_and_count(hidden, labels)
        return total / count.clamp(min=1)

    def hidden_states(self, handle, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`handle.forward(batch)` with the output layer replaced by an identity for the call:
        the last hidden states, which this loss takes in place of logits."""
        parent, name = _parent_of(handle.model, self.head)
        setattr(parent, name, nn.Identity())
        try:
            return handle.forward(batch)
        finally:
            setattr(parent, name, self.head)


def _parent_of(model: nn.Module, child: nn.Module) -> tuple[nn.Module, str]:
    for module in model.modules():
        for name, sub in module.named_children():
            if sub is child:
                return module, name
    raise ValueError("the output layer is not a submodule of the model")
