"""Data cleaning, one job per module; `clean.py` runs them in order over the splits.

text        repair one text (ftfy, HTML, control characters, whitespace), find garbled ones, dedupe keys
duplicates  exact groups by key, near-duplicate groups by MinHash LSH (datasketch)
conflicts   one row per duplicate group, resolving different labels (drop, majority, keep)
label_errors likely label errors: cleanlab on out-of-fold logistic-regression probabilities (TF-IDF
             or encoder features)
encoder_features  a frozen encoder's mean-pooled features of the rows, cached on disk
changes     the per-row record of every change, written beside the cleaned files
clean       the whole cleaning of a run's splits, top to bottom
chat        the same steps on instruction data (causal LMs): every turn repaired, whole examples compared
images      duplicates, label conflicts and leakage of image splits, by a hash of the decoded pixels
"""
