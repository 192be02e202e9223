"""The recipe's search space (tailorkit.config.space) as Optuna distributions."""

from __future__ import annotations

from tailorkit.config.search import CategoricalParam, IntParam, SearchConfig
from tailorkit.config.space import condition


def distributions(cfg: SearchConfig, conditional: bool = False) -> dict:
    """The space as Optuna distributions, keyed by dotted path (the Optuna parameter names):
    the parameters every trial samples, or (`conditional`) the options of a method the space
    chooses, which only the trials that choose it sample."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for path, p in cfg.space.items():
        if (condition(cfg, path) is not None) != conditional:
            continue
        if isinstance(p, CategoricalParam):
            out[path] = CategoricalDistribution(p.choices)
        elif isinstance(p, IntParam):
            out[path] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[path] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def suggest_conditional(trial, cfg: SearchConfig) -> None:
    """Sample the options of the method this trial chose (define-by-run: Optuna's samplers
    model an option only over the trials that have it)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    for path, dist in distributions(cfg, conditional=True).items():
        index_path, method = condition(cfg, path)
        if trial.params.get(index_path) != method:
            continue
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(path, dist.choices)
        elif isinstance(dist, FloatDistribution):
            trial.suggest_float(path, dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            trial.suggest_int(path, dist.low, dist.high, log=dist.log, step=dist.step)
