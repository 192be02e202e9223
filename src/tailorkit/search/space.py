"""The recipe's search space (tailorkit.config.space) as Optuna distributions."""

from __future__ import annotations

from tailorkit.config.search import CategoricalParam, IntParam, SearchConfig


def distributions(cfg: SearchConfig) -> dict:
    """The space as Optuna distributions, keyed by dotted path (the Optuna parameter names)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for path, p in cfg.space.items():
        if isinstance(p, CategoricalParam):
            out[path] = CategoricalDistribution(p.choices)
        elif isinstance(p, IntParam):
            out[path] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[path] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out
