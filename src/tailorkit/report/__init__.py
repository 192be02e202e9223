"""The HTML report of a run, a search or a study (`tailor report DIR`): one self-contained file.

collect   what DIR is (run, compressed runs, search, study) and its entries
plots     matplotlib figures as inline PNG: Pareto fronts, learning curves, confusion matrix
html      the page: table, plots, each entry's recipe
"""
