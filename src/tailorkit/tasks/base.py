"""The Task protocol and its registry.

A task says what a run learns: how its data is read and split, which base model it starts
from, its loss and metrics, what it writes for the test split, and how a saved model is loaded
again. Adding a task is one module with one `@register`; the recipe, the pipeline, the CLI and
the task contract tests all read this registry. Methods never see the task's name: they read
`handle.output` and `handle.modality`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tailorkit.config.recipe import Recipe
from tailorkit.config.tasks import TASK_NAMES
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.train.setup import Setup


class Task:
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    output: ClassVar[str]  # what the model predicts: classes, scalar, next_token or masked_token
    modality: ClassVar[str] = "text"
    losses: ClassVar[tuple[str, ...]] = ("auto",)  # train.loss values that fit
    metrics: ClassVar[list[str]]  # validation metrics (early stopping, search)
    headline: ClassVar[list[str]]  # the test metrics `tailor train` prints
    auto_class: ClassVar[str]  # the transformers class that loads a merged model of this task
    table: ClassVar[bool] = False  # one labelled table: cross-validation folds can be cut from it
    frozen_base_ok: ClassVar[bool] = True  # a 4-bit frozen base (QLoRA) makes sense
    length_grouping: ClassVar[bool] = True  # `train.length_grouping` where the recipe leaves it out
    # Where `tailor predict` and `tailor eval` on texts do not fit the task: what its runs do
    # instead, said when they are asked (empty: they fit).
    not_text_predictions: ClassVar[str] = ""
    # Recipe fields (dotted paths) that only some tasks read: each task names those it reads,
    # and `tailor recipe validate` leaves out the others' (`unread_fields`).
    reads: ClassVar[frozenset[str]] = frozenset()
    # Fields of a section it reads that mean nothing to this task, with why: a value other than the
    # default (or off) is refused, naming the field (e.g. data.clean.label_errors for causal LMs).
    ignores: ClassVar[dict[str, str]] = {}
    # Sections it does not read, with why; said when a recipe sets one.
    refuses: ClassVar[dict[str, str]] = {}

    def check_recipe(self, recipe: Recipe) -> None:
        """Refuse options that do not fit the task with a ValueError naming the field, one
        line per problem."""
        problems = []
        if recipe.train.loss not in self.losses:
            problems.append(f"train.loss: '{recipe.train.loss}' does not fit task {self.name} "
                            f"(allowed: {', '.join(self.losses)})")
        if recipe.model.quantize_base != "none" and not self.frozen_base_ok:
            problems.append(f"model.quantize_base: task {self.name} trains the encoder itself; use none")
        es = recipe.train.early_stopping
        if es is not None and es.metric not in self.metrics:
            problems.append(f"train.early_stopping.metric: '{es.metric}' is not a {self.name} "
                            f"metric (allowed: {', '.join(self.metrics)})")
        for section in ("clean", "augment"):  # the data-quality steps of tasks that run them
            if getattr(recipe.data, section) is not None and f"data.{section}" not in self.reads:
                doing = sorted(t.name for t in TASKS.values() if f"data.{section}" in t.reads)
                why = f": {self.refuses[f'data.{section}']}" if f"data.{section}" in self.refuses else ""
                problems.append(f"data.{section}: task {self.name} does not run it (tasks that do: "
                                f"{', '.join(doing)}){why}")
        problems += self._ignored_fields(recipe)
        if problems:
            raise ValueError("\n".join(problems))

    def _ignored_fields(self, recipe: Recipe) -> list[str]:
        """`ignores`, and the training options only other tasks read (class weights for a
        regression): a value a user set there would do nothing."""
        ignored = dict(self.ignores)
        for path in sorted(p for p in self.unread_fields() if p.startswith("train.")):
            readers = sorted(t.name for t in TASKS.values() if path in t.reads)
            ignored[path] = f"only {', '.join(readers)} read it"
        problems = []
        for path, why in ignored.items():
            *sections, name = path.split(".")
            node = recipe
            for section in sections:
                node = getattr(node, section, None)
            if node is None:
                continue
            value, default = getattr(node, name), type(node).model_fields[name].default
            if value != default and value not in (False, None, 0, "off"):
                problems.append(f"{path}: {value!r} does not apply to task {self.name} ({why}); "
                                "leave it out")
        return problems

    def unread_fields(self) -> set[str]:
        """The task-specific recipe fields of other tasks, which this one never reads."""
        return set().union(*(task.reads for task in TASKS.values())) - self.reads

    def build_base(self, recipe: Recipe, labels: list[str]) -> ModelHandle:
        """The pretrained model with this task's head (new where the task needs one)."""
        raise NotImplementedError

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        """Data -> base model -> encoded splits, before any method is applied. `augment: false`
        gives the train split the evaluation preprocessing (features computed once)."""
        raise NotImplementedError

    def write_test_outputs(self, setup: Setup, recipe: Recipe, run_dir: Path) -> dict:
        """Score the test split; write the task's own files (predictions, generations)."""
        raise NotImplementedError

    def load_model(self, recipe: Recipe, directory: Path, labels: list[str]) -> tuple[ModelHandle, list[str]]:
        """A whole saved model (no adapter) and its labels, for predict, eval and generate."""
        raise NotImplementedError

    def weights_identity(self, recipe: Recipe) -> dict:
        """What names the base's weights, for caches keyed by model (feature extraction)."""
        raise NotImplementedError

    def preprocessing(self, recipe: Recipe) -> dict:
        """The input settings a cached feature depends on."""
        raise NotImplementedError


TASKS: dict[str, Task] = {}
# data.clean's fields about labels: unlabelled tasks (causal LM, masked LM) ignore them
CLEAN_LABEL_FIELDS = ("label_conflicts", "label_errors", "label_error_features", "label_error_model",
                      "label_error_folds")
# data.clean's fields about text only: image data ignores them
TEXT_CLEAN_FIELDS = ("fix_text", "strip_html", "whitespace", "garbled", "min_words", "max_words", "min_chars",
                     "max_chars")


def register(cls: type[Task]) -> type[Task]:
    if cls.name in TASKS:
        raise ValueError(f"task '{cls.name}' registered twice")
    TASKS[cls.name] = cls()
    for name in (cls.name, *cls.aliases):
        TASK_NAMES[name] = cls.name
    return cls


def task_of(recipe: Recipe) -> Task:
    try:
        return TASKS[recipe.task]
    except KeyError:
        raise TailorError(f"task: '{recipe.task}' is not registered") from None
