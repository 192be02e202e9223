"""Hyperparameter search on Optuna: `tailor tune recipe.yaml`.

space    dotted recipe paths: checked against the schema, turned into Optuna distributions
         (the `search:` block itself is typed in tailorkit.config.search)
study    the study directory, its storage, sampler and pruner
folds    k-fold data files for cross-validated trials
objective one trial: a normal run (or k) that reports each validation to the pruner
worker   the ask/run/tell loop one process runs, and N such processes on one storage
report   trials table, best recipe, importances, plots, `--status`
tune     `tailor tune` and `tailor tune --status`
"""
