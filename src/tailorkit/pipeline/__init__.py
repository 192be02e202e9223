"""A run as a pipeline of stages. Read run.py first: it is `tailor train` top to bottom.

run       train / resume: the stage list, progress.json, summary.json
stages    Run (what the stages share) and the stages: prepare, train, save, evaluate
assemble  data -> base model -> methods, and the loop that trains them
run_dir   claiming the run directory, atomic writes, the model/ folder
"""

from tailorkit.pipeline.assemble import make_trainer, setup_run
from tailorkit.pipeline.run import STAGES, resume, train

__all__ = ["STAGES", "make_trainer", "resume", "setup_run", "train"]
