"""Data cleaning, one job per module; `clean.py` runs them in order over the splits.

text        repair one text (ftfy, HTML, control characters, whitespace), find garbled ones, dedupe keys
duplicates  exact groups by key, near-duplicate groups by MinHash LSH (datasketch)
conflicts   one row per duplicate group, resolving different labels (drop, majority, keep)
label_errors likely label errors: cleanlab on out-of-fold TF-IDF + logistic-regression probabilities
changes     the per-row record of every change, written beside the cleaned files
clean       the whole cleaning of a run's splits, top to bottom
"""
