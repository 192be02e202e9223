"""Knowledge distillation: the student learns from a finished run's predictions as well as from
the labels (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    objective = (1 - alpha) * task loss + alpha * teacher term
    soft: T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))
    hard: cross-entropy against the teacher's predicted classes (or tokens)

A temperature T > 1 softens both distributions so the student also learns which wrong classes
the teacher finds likely; the T^2 factor keeps the term's gradients the same size whatever T.

- Text classification: the teacher is any finished run with the same classes (its own model,
  tokenizer and max_length); its logits on the training split are computed once, before
  training, and ride along with each batch.
- Image classification: the teacher (an image run that reads images as the student's recipe
  does) scores each batch as it comes, since training images are augmented afresh each epoch.
- Causal LMs: the term is per supervised token, and the teacher must share the student's
  vocabulary. Its `top_k` likeliest next tokens per position are cached with the rest of its
  probability mass as one more outcome (the full distributions, N x L x 49k floats for
  SmolLM2, would not fit). The soft term is the KL over those k + 1 outcomes: exactly the
  full KL when k covers the vocabulary, and never more than it otherwise (grouping outcomes
  cannot raise a KL), so the tail keeps its weight instead of being spread over the top k.

Self-distillation ("born-again networks", Furlanello et al. 2018) is the same recipe with a
teacher that is an earlier run of the student's own model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from tailorkit.compress.measure import parameter_counts  # an int8 teacher's weights count too
from tailorkit.data.batching import EncodedSplit, eval_batches
from tailorkit.data.prepare import Split
from tailorkit.device import autocast, to_device
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import predict_logits
from tailorkit.evaluate.token_loss import token_loss_sum
from tailorkit.methods.base import METHODS, Method, MethodConfig, register
from tailorkit.models.handle import ModelHandle
from tailorkit.train.setup import Setup

OUTPUTS = ("classes", "next_token")


class DistillConfig(MethodConfig):
    teacher: str = Field(description="A finished run whose predictions the student learns from: a "
                                     "classifier with the same classes, or a causal LM with the same "
                                     "tokenizer.")
    temperature: float = Field(2.0, gt=0, description="Softens teacher and student distributions "
                                                      "(soft targets only).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the teacher term; the labels' loss "
                                                      "gets 1 - alpha.")
    targets: Literal["soft", "hard"] = Field("soft", description="soft: match the teacher's "
                                             "distribution (KL); hard: learn its predicted classes.")
    top_k: int = Field(32, ge=1, description="causal LMs: the teacher's likeliest next tokens cached per "
                                            "position; the rest of its mass is one more outcome.")


def teacher_term(student: torch.Tensor, teacher: torch.Tensor, targets: str, temperature: float
                 ) -> torch.Tensor:
    """Classification: one distribution per example."""
    student = student.float()
    if targets == "hard":
        return F.cross_entropy(student, teacher.argmax(-1))
    t = temperature
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                    reduction="batchmean") * t * t


def token_term(student: torch.Tensor, labels: torch.Tensor, teacher: dict[str, torch.Tensor],
               targets: str, temperature: float) -> torch.Tensor:
    """Causal LMs: over the supervised positions (position t predicts token t + 1), the student's
    next-token distribution against the teacher's: its top-k log-probabilities at `temperature`
    (`teacher_logprobs`) for the token ids `teacher_tokens`, and the rest of its mass."""
    if student.size(1) > labels.size(1):  # prompt tuning's virtual tokens come first
        student = student[:, student.size(1) - labels.size(1):]
    mask = labels[:, 1:] != -100
    s = student[:, :-1][mask].float()
    log_pt, tokens = teacher["teacher_logprobs"][:, :-1][mask], teacher["teacher_tokens"][:, :-1][mask]
    if targets == "hard":
        return F.cross_entropy(s, tokens[:, 0])
    log_ps = F.log_softmax(s / temperature, -1).gather(-1, tokens)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    tail_t, tail_s = _rest(log_pt), _rest(log_ps)
    kl = kl + tail_t.exp() * (tail_t - tail_s)
    return kl.mean() * temperature * temperature


def _rest(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(p)): the log-probability of every outcome outside the top k."""
    return torch.log1p(-log_p.exp().sum(-1).clamp(max=1 - 1e-6))


class ClassTargets:
    """The teacher's logits for every training example."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def batch(self, indices: list[int], batch: dict) -> dict[str, torch.Tensor]:
        return {"teacher_logits": self.logits[indices]}


class LiveTargets:
    """Image models: the teacher scores each batch as it comes. Training images are augmented
    afresh every epoch, so logits cached once would belong to other pixels."""

    def __init__(self, teacher: ModelHandle, precision: str) -> None:
        self.teacher, self.precision = teacher, precision

    @torch.no_grad()  # not inference_mode: the logits enter the student's autograd graph
    def batch(self, indices: list[int], batch: dict) -> dict[str, torch.Tensor]:
        with autocast(self.teacher.device, self.precision):
            return {"teacher_logits": self.teacher.forward(to_device(batch, self.teacher.device)).float()}


class TokenTargets:
    """Per training example: the positions whose next token is supervised, and there the
    teacher's top-k log-probabilities at the temperature and their token ids."""

    def __init__(self, positions: list[np.ndarray], logprobs: list[torch.Tensor], tokens: list[torch.Tensor],
                 k: int) -> None:
        self.positions, self.logprobs, self.tokens, self.k = positions, logprobs, tokens, k

    def batch(self, indices: list[int], batch: dict) -> dict[str, torch.Tensor]:
        width = batch["input_ids"].size(1)
        logprobs = torch.full((len(indices), width, self.k), -1e4)
        tokens = torch.zeros(len(indices), width, self.k, dtype=torch.long)
        for row, i in enumerate(indices):
            logprobs[row, self.positions[i]] = self.logprobs[i]
            tokens[row, self.positions[i]] = self.tokens[i].long()
        return {"teacher_logprobs": logprobs, "teacher_tokens": tokens}


class WithTeacher:
    """A training split whose batches also carry the teacher's targets."""

    def __init__(self, split, teacher: ClassTargets | TokenTargets | LiveTargets) -> None:
        self.split, self.teacher = split, teacher  # split.targets stay the labels

    def __len__(self) -> int:
        return len(self.split)

    def __getattr__(self, name: str):
        return getattr(self.split, name)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.split.collate(indices)
        return {**batch, **self.teacher.batch(indices, batch)}


def class_targets(teacher: ModelHandle, teacher_recipe, train) -> tuple[ClassTargets, dict]:
    own = EncodedSplit(Split("train", train.texts, train.pairs, train.targets), teacher.tokenizer,
                       teacher_recipe.model.max_length)
    t = teacher_recipe.train
    logits = predict_logits(teacher, own, t.eval_batch_size, t.precision)
    agreement = float((logits.argmax(-1) == train.targets).mean())
    return ClassTargets(torch.from_numpy(logits)), {"teacher_train_accuracy": round(agreement, 4)}


@torch.inference_mode()
def token_targets(teacher: ModelHandle, train, k: int, temperature: float, precision: str
                  ) -> tuple[TokenTargets, dict]:
    positions: list = [None] * len(train)
    logprobs: list = [None] * len(train)
    tokens: list = [None] * len(train)
    total, count = 0.0, 0
    teacher.model.eval()
    for indices in eval_batches(train.lengths, 8):  # 8 x length x vocabulary logits at a time
        batch = to_device(train.collate(indices), teacher.device)
        with autocast(teacher.device, precision):
            logits = teacher.forward(batch)
        loss_sum, n = token_loss_sum(logits, batch["labels"])
        total, count = total + float(loss_sum), count + int(n)
        top = F.log_softmax(logits.float() / temperature, -1).topk(k, dim=-1)
        values, ids = top.values.cpu(), top.indices.cpu()  # kept for the whole training: host memory
        for row, i in enumerate(indices):
            where = np.flatnonzero(np.asarray(train.labels[i][1:]) != -100)
            positions[i] = where
            logprobs[i], tokens[i] = values[row, where], ids[row, where].int()
    facts = {"teacher_train_loss": round(total / max(count, 1), 4)}
    return TokenTargets(positions, logprobs, tokens, k), facts


@register
class Distill(Method):
    name = "distill"
    Config = DistillConfig
    summary = "knowledge distillation from a finished run: classes or (causal LMs) next tokens, soft or hard"
    needs = "a teacher of the same kind"
    needs_logits = True

    def apply(self, handle: ModelHandle) -> None:
        """The model is the student as the other methods leave it; only the objective changes."""

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.output not in OUTPUTS:
            raise ValueError(f"{where}: distill needs a classification or causal-LM task (got {task.name})")
        if any(METHODS[spec.name].fixed_inputs for spec in recipe.methods):
            raise ValueError(f"{where}: distill does not combine with feature extraction")
        teacher = Path(self.config.teacher)
        if not (teacher / "recipe.yaml").is_file() or not (teacher / "model").is_dir():
            raise ValueError(f"{where}.distill.teacher: {teacher} is not a finished run directory "
                             "(it needs recipe.yaml and model/); train the teacher first")

    def adapt(self, setup: Setup, task, recipe) -> Setup:
        c, student = self.config, setup.handle
        started = time.perf_counter()
        teacher_recipe, teacher, labels, _ = setup.load_run(c.teacher)
        teacher.model.to(student.device)  # it scores the student's batches where they are
        train = setup.splits["train"]
        if student.output == "classes" and (teacher.output != "classes" or labels != setup.labels):
            raise TailorError(f"distill.teacher: {c.teacher} predicts {labels}, the data has "
                              f"{setup.labels}; the teacher needs the same classes in the same order")
        if student.modality == "image":
            mixing = {"mixup", "cutmix", "mix_prob", "switch_prob"}  # the student's batches only
            if teacher.modality != "image" or (teacher_recipe.data.image.model_dump(exclude=mixing)
                                               != recipe.data.image.model_dump(exclude=mixing)):
                raise TailorError(f"distill.teacher: {c.teacher} must be an image run that reads images as "
                                  "this recipe does (the same data.image settings)")
            teacher.model.eval()
            targets, facts = LiveTargets(teacher, recipe.train.precision), {}
        elif student.output == "classes":
            print(f"distill: teacher {c.teacher} predicts the {len(train)} training examples",
                  file=sys.stderr)
            targets, facts = class_targets(teacher, teacher_recipe, train)
        else:
            if teacher.output != "next_token" or not same_vocabulary(teacher, student):
                raise TailorError(f"distill.teacher: {c.teacher} is not a causal LM with the student's "
                                  "vocabulary; token-level distillation needs the same tokenizer")
            print(f"distill: teacher {c.teacher} scores the next tokens of {len(train)} training examples",
                  file=sys.stderr)
            targets, facts = token_targets(teacher, train, c.top_k, c.temperature, recipe.train.precision)
        setup.splits["train"] = WithTeacher(train, targets)
        setup.info["distill"] = {"teacher": c.teacher,
                                 "teacher_parameters": parameter_counts(teacher)["total"], **facts,
                                 "teacher_seconds": round(time.perf_counter() - started, 2)}
        return setup

    def objective(self, objective: torch.Tensor, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        c = self.config
        if "teacher_tokens" in batch:
            term = token_term(logits, batch["labels"], batch, c.targets, c.temperature)
        else:
            term = teacher_term(logits, batch["teacher_logits"], c.targets, c.temperature)
        return (1 - c.alpha) * objective + c.alpha * term


def same_vocabulary(a: ModelHandle, b: ModelHandle) -> bool:
    """The same token ids for the same strings, and the same number of output logits."""
    size = [h.model.get_output_embeddings().out_features for h in (a, b)]
    return size[0] == size[1] and a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
