"""Knowledge distillation: the student learns from a finished run's predictions as well as from
the labels (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    objective = (1 - alpha) * task loss + alpha * teacher term
    soft: T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))
    hard: cross-entropy against the teacher's predicted classes

A temperature T > 1 softens both distributions so the student also learns which wrong classes
the teacher finds likely; the T^2 factor keeps the term's gradients the same size whatever T.
The teacher is any finished classification run with the same classes (its own model, tokenizer
and max_length). Its logits on the training split are computed once, before training, and ride
along with each batch. Self-distillation ("born-again networks", Furlanello et al. 2018) is the
same recipe with a teacher that is an earlier run of the student's own model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from tailorkit.data.batching import EncodedSplit
from tailorkit.data.prepare import Split
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import predict_logits
from tailorkit.methods.base import METHODS, Method, MethodConfig, register
from tailorkit.models.handle import ModelHandle
from tailorkit.train.setup import Setup


class DistillConfig(MethodConfig):
    teacher: str = Field(description="A finished classification run directory (same classes) whose "
                                     "predictions the student learns from.")
    temperature: float = Field(2.0, gt=0, description="Softens teacher and student distributions "
                                                      "(soft targets only).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the teacher term; the labels' loss "
                                                      "gets 1 - alpha.")
    targets: Literal["soft", "hard"] = Field("soft", description="soft: match the teacher's "
                                             "distribution (KL); hard: learn its predicted classes.")


def teacher_term(student: torch.Tensor, teacher: torch.Tensor, targets: str, temperature: float
                 ) -> torch.Tensor:
    student = student.float()
    if targets == "hard":
        return F.cross_entropy(student, teacher.argmax(-1))
    t = temperature
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                    reduction="batchmean") * t * t


class WithTeacher:
    """A training split whose batches also carry the teacher's logits."""

    def __init__(self, split, logits: torch.Tensor) -> None:
        self.split, self.logits = split, logits

    def __len__(self) -> int:
        return len(self.split)

    def __getattr__(self, name: str):
        return getattr(self.split, name)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {**self.split.collate(indices), "teacher_logits": self.logits[indices]}


@register
class Distill(Method):
    name = "distill"
    Config = DistillConfig
    summary = "knowledge distillation from a finished run (soft targets with temperature, or hard)"
    modalities = frozenset({"text"})
    needs = "the teacher re-reads the training texts with its own tokenizer"

    def apply(self, handle: ModelHandle) -> None:
        """The model is the student as the other methods leave it; only the objective changes."""

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.output != "classes":
            raise ValueError(f"{where}: distill needs a classification task (got {task.name})")
        if any(METHODS[spec.name].fixed_inputs for spec in recipe.methods):
            raise ValueError(f"{where}: distill does not combine with feature extraction")
        teacher = Path(self.config.teacher)
        if not (teacher / "recipe.yaml").is_file() or not (teacher / "model").is_dir():
            raise ValueError(f"{where}.distill.teacher: {teacher} is not a finished run directory "
                             "(it needs recipe.yaml and model/); train the teacher first")

    def adapt(self, setup: Setup, task, recipe) -> Setup:
        c = self.config
        started = time.perf_counter()
        teacher_recipe, teacher, labels, _ = setup.load_run(c.teacher)
        if teacher.output != "classes" or labels != setup.labels:
            raise TailorError(f"distill.teacher: {c.teacher} predicts {labels}, the data has "
                              f"{setup.labels}; the teacher needs the same classes in the same order")
        train = setup.splits["train"]
        print(f"distill: teacher {c.teacher} predicts the {len(train)} training examples", file=sys.stderr)
        own = EncodedSplit(Split("train", train.texts, train.pairs, train.targets), teacher.tokenizer,
                           teacher_recipe.model.max_length)
        logits = predict_logits(teacher, own, teacher_recipe.train.eval_batch_size, teacher_recipe.train.bf16)
        setup.splits["train"] = WithTeacher(train, torch.from_numpy(logits))
        agreement = float((logits.argmax(-1) == train.targets).mean())
        setup.info["distill"] = {"teacher": c.teacher, "teacher_parameters": teacher.count_parameters()[1],
                                 "teacher_train_accuracy": round(agreement, 4),
                                 "teacher_seconds": round(time.perf_counter() - started, 2)}
        return setup

    def objective(self, objective: torch.Tensor, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        c = self.config
        term = teacher_term(logits, batch["teacher_logits"], c.targets, c.temperature)
        return (1 - c.alpha) * objective + c.alpha * term
