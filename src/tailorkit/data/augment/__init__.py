"""Training-data augmentation, one job per module.

eda       the four EDA word edits (Wei & Zou 2019): synonym replacement, insertion, swap, deletion
synonyms  where synonyms come from: WordNet (nltk's reader), or the model's embedding neighbours
augment   new rows for a training table: how many per row and class, seeded, each one recorded
"""
