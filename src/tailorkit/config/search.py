"""The `search:` block of a recipe: what `tailor tune` varies, how it samples and prunes.

Typed like the rest of the recipe, so the same fields feed YAML, `--set`, the reference
and the saved study. Paths in `space` are checked against the recipe by `config.space`
(called when a recipe is loaded): a typo fails at validation, not at trial 12.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from tailorkit.config.metrics import HIGHER_IS_BETTER

# What a trial costs, beside its validation metrics, and which way is better: each finished
# run records these (tailorkit.costs reads them), so a multi-objective search can trade them off.
COSTS = {"trainable_params": "minimize", "train_seconds": "minimize", "samples_per_second": "maximize",
         "peak_memory_mb": "minimize", "latency_ms": "minimize"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `low: -.inf` has no trials


class FloatParam(_Strict):
    type: Literal["float"] = Field("float", description="A real number between low and high.")
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value (included).")
    log: bool = Field(False, description="Sample on a log scale (learning rates); needs low > 0.")
    step: float | None = Field(None, gt=0, description="Discretise: low, low + step, ... (grid needs it).")

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntParam(_Strict):
    type: Literal["int"] = Field("int", description="An integer between low and high.")
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value (included).")
    step: int = Field(1, ge=1, description="Spacing: low, low + step, ...")
    log: bool = Field(False, description="Sample on a log scale; needs low > 0 and step 1.")

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.step if self.step > 1 else None)
        return self


Scalar = bool | int | float | str | None


class CategoricalParam(_Strict):
    type: Literal["categorical"] = Field("categorical", description="One of a list of values.")
    choices: list[Scalar] = Field(min_length=1, description="The values (numbers, strings, "
                                                            "booleans or null).")

    @field_validator("choices")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        seen = [repr(v) for v in value]
        if len(set(seen)) != len(seen):
            raise ValueError(f"choices repeat a value: {value}")
        return value


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got {low})")
    if log and step is not None:
        raise ValueError("log scale and step do not combine; drop one")


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[BaseModel]] = {"float": FloatParam, "int": IntParam,
                                           "categorical": CategoricalParam}


class PruningConfig(_Strict):
    min_resource: int = Field(1, ge=1, description="hyperband/asha: steps a trial runs before its first "
                                                   "rung; set it near train.eval_steps.")
    max_resource: int | None = Field(None, ge=1, description="hyperband: steps of a full trial; null: "
                                                             "the first finished trial's steps.")
    reduction_factor: int = Field(3, ge=2, description="hyperband/asha: 1 in this many trials goes on "
                                                       "at each rung.")
    startup_trials: int = Field(5, ge=0, description="median: finished trials before any pruning.")
    warmup_steps: int = Field(0, ge=0, description="median: steps before a trial may be pruned.")


class Objective(_Strict):
    metric: str = Field(description="A validation metric of the task (accuracy, loss...) or a cost: "
                                    + ", ".join(COSTS) + ".")
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: maximize accuracy/F1/r2 and samples_per_second, minimize losses, "
                            "errors and the other costs.")

    def resolved(self) -> str:
        if self.direction != "auto":
            return self.direction
        if self.metric in COSTS:
            return COSTS[self.metric]
        return "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"


class SearchConfig(_Strict):
    space: dict[str, Param] = Field(
        min_length=1, description="Recipe field by dotted path (train.lr, methods.0.lora.r) -> "
                                  "{type: float|int|categorical, ...}; a list is a categorical.")
    sampler: Literal["grid", "random", "tpe", "nsga2"] = Field(
        "tpe", description="grid: every point once; random; tpe: Bayesian (Optuna's TPE); nsga2: "
                           "Optuna's genetic NSGA-II (for objectives).")
    pruner: Literal["none", "median", "hyperband", "asha"] = Field(
        "none", description="Stops weak trials early from the validation metric at each "
                            "evaluation; asha: one successive-halving bracket.")
    pruning: PruningConfig = Field(default_factory=PruningConfig,
                                   description="Options of the pruner (section).")
    n_trials: int | None = Field(None, ge=1, description="Trials in the whole study (a re-run "
                                                         "continues the count); default: the grid's "
                                                         "size for grid, else 20.")
    timeout: float | None = Field(None, gt=0, description="Seconds this tailor tune may start trials "
                                                         "for; running trials finish.")
    metric: str = Field("loss", description="Validation metric to optimise (loss, accuracy, f1_macro...).")
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: maximize accuracy/F1/precision/recall/r2, minimize losses and errors.")
    objectives: list[Objective] | None = Field(
        None, min_length=2, description="Multi-objective search instead of metric/direction: two or more "
                                        "{metric, direction}; the study returns the Pareto front.")
    population_size: int = Field(20, ge=2, description="nsga2: trials per generation.")
    seed: int = Field(0, description="Seed of the sampler (grid order, random and TPE draws).")
    startup_trials: int = Field(5, ge=1, description="tpe: random trials before TPE models the space.")
    cv_folds: int | None = Field(None, ge=2, description="k-fold cross-validation per trial on train + "
                                                         "validation: the metric is the mean of k runs.")
    storage: str | None = Field(None, description="Optuna storage URL (postgresql://... for workers on "
                                                  "several machines); default: SQLite study.db in "
                                                  "output_dir.")
    study_name: str | None = Field(None, description="Study name in the storage; default: the "
                                                     "output_dir folder name.")

    @field_validator("space", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """A list means categorical; a missing `type` is read from the keys and values, so
        `{low: 1e-4, high: 1e-2, log: true}` needs no `type: float`."""
        if not isinstance(value, dict):
            raise ValueError("space maps dotted recipe paths to parameters, e.g. "
                             "{train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}")
        out = {}
        for path, spec in value.items():
            if isinstance(spec, list):
                spec = {"type": "categorical", "choices": spec}
            if not isinstance(spec, dict):
                raise ValueError(f"{path}: give a list of choices or {{low: ..., high: ...}} "
                                 f"(got {spec!r})")
            kind = spec.get("type") or _infer_type(spec)
            if not isinstance(kind, str) or kind not in PARAM_TYPES:  # a list is unhashable
                raise ValueError(f"{path}: type must be one of: float, int, categorical (got {kind!r})")
            allowed = list(PARAM_TYPES[kind].model_fields)
            unknown = [k for k in spec if k not in allowed]
            if unknown:
                raise ValueError(f"{path}: unknown key {unknown[0]!r} for a {kind} parameter "
                                 f"(allowed: {', '.join(allowed)})")
            out[path] = {**spec, "type": kind}
        return out

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("objectives") is not None:
            both = [k for k in ("metric", "direction") if k in value]
            if both:
                raise ValueError(f"give either {' and '.join(both)} (one objective) or objectives "
                                 "(several), not both")
        return value

    @model_validator(mode="after")
    def _multi(self) -> SearchConfig:
        if self.objectives is None:
            return self
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a metric: {names}")
        if self.pruner != "none":
            raise ValueError(f"pruner {self.pruner} cannot judge a trial on several objectives (Optuna "
                             "prunes single-objective studies only); set pruner: none")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        """The form that was given: objectives without metric/direction, or the other way round,
        so a saved recipe loads again."""
        out = handler(self)
        drop = ("metric", "direction") if self.objectives is not None else ("objectives",)
        return {k: v for k, v in out.items() if k not in drop}

    @property
    def multi(self) -> bool:
        return self.objectives is not None

    def objective_names(self) -> list[str]:
        return [o.metric for o in self.objectives] if self.objectives else [self.metric]

    def directions(self) -> list[str]:
        return [o.resolved() for o in self.objectives] if self.objectives else [self.resolved_direction()]

    def resolved_direction(self) -> str:
        if self.direction != "auto":
            return self.direction
        return "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"

    def trials_wanted(self, grid_size: int | None) -> int:
        if self.n_trials is not None:
            return min(self.n_trials, grid_size) if grid_size else self.n_trials
        return grid_size or 20


def _infer_type(spec: dict) -> str:
    if "choices" in spec:
        return "categorical"
    bounds = [spec.get("low"), spec.get("high"), spec.get("step", 1)]
    return "int" if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) else "float"
