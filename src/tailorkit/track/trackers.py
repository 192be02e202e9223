"""Trackers beside metrics.jsonl (`train.report_to`): each gets the same records the log gets,
once the recipe's values as parameters, and at the end of a finished run its files (ARTEFACTS:
MLflow keeps them as artefacts; TensorBoard, which has none, shows them as text). Each library
is imported only when asked for; a missing one is a one-line error naming the package to install."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import yaml

from tailorkit.errors import TailorError

TRACKING = "tracking.json"  # the tracker run ids of this run, so a resume continues the same runs
ARTEFACTS = ("summary.json", "recipe.yaml", "report.html")  # those a finished run has
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard==2.21.0"),
            "mlflow": ("mlflow", "mlflow-skinny==3.17.2"), "wandb": ("wandb", "wandb==0.29.0")}


def check_installed(names: list[str]) -> None:
    for name in names:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise TailorError(f"train.report_to: {name} needs the {module} package, which is not installed; "
                              f"install it with `pip install {package}` (or remove {name})")


def flat_params(run_dir: Path) -> dict[str, str]:
    """The run's recipe.yaml as dotted keys (`train.lr`), values as text."""
    path = run_dir / "recipe.yaml"
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    out: dict[str, str] = {}

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk(raw, "")
    return out


def scalars(kind: str, values: dict) -> dict[str, float]:
    """The record's numbers under `kind/` or `split/` (train/loss, validation/accuracy, test/f1_macro)."""
    prefix = values.get("split", kind)
    return {f"{prefix}/{k}": float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


class TensorBoardTracker:
    """Event files in RUN/tensorboard/ (`tensorboard --logdir RUN/tensorboard`)."""

    durable = True  # flushed at every record: a crash loses none

    def __init__(self, run_dir: Path, params: dict[str, str], ids: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        if "tensorboard" not in ids:
            self.writer.add_text("recipe", "\n".join(f"    {k}: {v}" for k, v in params.items()))
            ids["tensorboard"] = str(run_dir / "tensorboard")

    def log(self, kind: str, step: int, values: dict) -> None:
        for tag, value in scalars(kind, values).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self, run_dir: Path | None = None) -> None:
        for path in artefacts(run_dir):
            if path.suffix != ".html":  # a page is no text to show
                # indented: TensorBoard renders text as Markdown, and a code block keeps the file as is
                text = "".join(f"    {line}\n" for line in path.read_text().splitlines())
                self.writer.add_text(path.name, text)
        self.writer.close()


class MlflowTracker:
    """One MLflow run per tailorkit run, in `train.mlflow_uri` (default: $MLFLOW_TRACKING_URI, else
    RUN/mlflow.db), experiment `tailorkit`; written through MlflowClient (no global active run)."""

    durable = True  # each record is written to the store as it comes

    def __init__(self, run_dir: Path, params: dict[str, str], ids: dict, uri: str | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial ... tables"

        default = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default
        self.client = MlflowClient(tracking_uri=uri)
        if "mlflow" in ids:
            self.run_id = ids["mlflow"]["run_id"]
            return
        experiment = self.client.get_experiment_by_name("tailorkit")
        # the run's own store keeps its artefacts beside it (MLflow's default is ./mlruns, wherever
        # tailor was started); a store the user named keeps them where its experiment says
        here = (run_dir / "mlartifacts").resolve().as_uri() if uri == default else None
        experiment_id = (experiment.experiment_id if experiment else
                         self.client.create_experiment("tailorkit", artifact_location=here))
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        ids["mlflow"] = {"uri": uri, "run_id": self.run_id}

    def log(self, kind: str, step: int, values: dict) -> None:
        from mlflow.entities import Metric

        now = int(1000 * time.time())
        metrics = [Metric(k, v, now, step) for k, v in scalars(kind, values).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, run_dir: Path | None = None) -> None:
        for path in artefacts(run_dir):
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id)


class WandbTracker:
    """W&B in offline mode (no network): files in RUN/wandb/, uploadable later with `wandb sync`;
    the finished run's files go with it (`run.save`)."""

    durable = False  # offline W&B buffers: a killed process leaves its records unwritten

    def __init__(self, run_dir: Path, params: dict[str, str], ids: dict) -> None:
        import wandb

        run_id = ids.get("wandb") or uuid.uuid4().hex[:8]  # W&B's own id format: 8 [a-z0-9]
        self.run_dir = run_dir
        self.run = wandb.init(mode="offline", dir=str(run_dir), project="tailorkit", name=run_dir.name,
                              id=run_id, config=params,
                              settings=wandb.Settings(silent=True, console="off"))
        ids["wandb"] = run_id

    def log(self, kind: str, step: int, values: dict) -> None:
        self.run.log(scalars(kind, values), step=step)

    def close(self, run_dir: Path | None = None) -> None:
        for path in artefacts(run_dir):  # a copy in the W&B run's folder travels with it (no symlink)
            copy = shutil.copy2(path, Path(self.run.dir) / path.name)
            self.run.save(str(copy), base_path=self.run.dir, policy="now")
        self.run.finish()


def artefacts(run_dir: Path | None) -> list[Path]:
    """The ARTEFACTS the finished run in `run_dir` has (none while it has not finished)."""
    return [] if run_dir is None else [run_dir / n for n in ARTEFACTS if (run_dir / n).is_file()]


def add_report(run_dir: Path, page: Path) -> bool:
    """A report built after the run (`tailor report RUN`) joins the run's MLflow run as an
    artefact, beside its summary and recipe; True when it did."""
    path = run_dir / TRACKING
    ids = json.loads(path.read_text()).get("mlflow") if path.is_file() else None
    if not ids or importlib.util.find_spec("mlflow") is None:
        return False
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=ids["uri"]).log_artifact(ids["run_id"], str(page))
    return True


def open_trackers(run_dir: Path, names: list[str], mlflow_uri: str | None = None) -> list:
    """The trackers of `names`, each continuing its earlier run where this run resumes."""
    if not names:
        return []
    check_installed(names)
    params, path = flat_params(run_dir), run_dir / TRACKING
    ids = json.loads(path.read_text()) if path.is_file() else {}
    trackers = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir, params, ids))
        elif name == "mlflow":
            trackers.append(MlflowTracker(run_dir, params, ids, mlflow_uri))
        else:
            trackers.append(WandbTracker(run_dir, params, ids))
    path.write_text(json.dumps(ids, indent=2))
    return trackers
