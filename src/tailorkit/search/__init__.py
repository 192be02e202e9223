"""Hyperparameter search on Optuna: `tailor tune recipe.yaml`.

space    the recipe's space as Optuna distributions (the `search:` block and its dotted
         paths are tailorkit.config.search and tailorkit.config.space)
study    the study directory, its storage, sampler and pruner
folds    k-fold data files for cross-validated trials
objective one trial: a normal run (or k) that reports each validation to the pruner
worker   the ask/run/tell loop one process runs, and N such processes on one storage
report   trials table, best recipe, importances, plots, `--status`
tune     `tailor tune` and `tailor tune --status`
"""
