"""Side-by-side studies: one base recipe, named variants, seeds (`tailor study`).

plan      the study file, the recipe of each run, the study directory and its resume check
run       run every variant and seed through the normal pipeline; failures recorded, resumable
results   one row per variant from the runs' summary.json: metric mean ± std and costs
tables    the rows as terminal text, Markdown and CSV
"""
