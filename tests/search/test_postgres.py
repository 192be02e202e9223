"""`search.storage: postgresql://...` against a real PostgreSQL server started here: two
`tailor tune` processes share one study, and killing one loses only its running trial.

The server is Debian's PostgreSQL (scripts/setup.sh installs it where it can); initdb refuses
to run as root, so as root the server runs as `nobody`. Skipped, with the reason, where no
server can be started."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.search import study as study_mod
from tailorkit.search.study import driver_url

USER = "tailor"


def _pg_bin() -> Path | None:
    """Debian's newest server (its /usr/bin holds only wrappers), else one on PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if versions:
        return Path(versions[-1]).parent
    found = [shutil.which(tool) for tool in ("initdb", "pg_ctl", "createdb")]
    return Path(found[0]).parent if all(found) and len({Path(f).parent for f in found}) == 1 else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster on a free local port, trusting local connections."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server: apt-get install postgresql (scripts/setup.sh does, as root)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to start PostgreSQL as an unprivileged user")
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(root, user="nobody")
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    init = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb could not create a cluster: {init.stderr.strip().splitlines()[-1:]}")
    start = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                "-o", f"-h 127.0.0.1 -p {port} -k {root} -F", "start")
    if start.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {log.strip().splitlines()[-1:]}")
    try:
        made = run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, "studies")
        assert made.returncode == 0, made.stderr
        yield f"postgresql://{USER}@127.0.0.1:{port}/studies"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_a_plain_postgresql_url_is_opened_with_psycopg_3():
    assert driver_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert driver_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert driver_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"  # named: kept
    assert driver_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with pytest.raises(TailorError) as err:
        study_mod.make_storage(f"postgresql://u:secret@127.0.0.1:{_free_port()}/db")
    assert "search.storage: cannot open postgresql://u:***@127.0.0.1" in str(err.value)
    assert "secret" not in str(err.value) and "Connection refused" in str(err.value)


def _recipe(tiny_recipe, tmp_path: Path, url: str, name: str, steps: int, space: dict) -> tuple[dict, Path]:
    raw = {**tiny_recipe, "output_dir": str(tmp_path / name),
           "train": {**tiny_recipe["train"], "max_steps": steps, "eval_steps": 3},
           "search": {"space": space, "sampler": "grid", "metric": "loss", "storage": url,
                      "study_name": name}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return raw, path


def _tune(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tailorkit", "tune", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trials(raw: dict, states=None):
    recipe = recipe_from_dict(raw)
    return study_mod.open_study(recipe, Path(recipe.output_dir)).get_trials(deepcopy=False, states=states)


def test_two_tune_processes_share_one_postgresql_study(postgres_url, tiny_recipe, tmp_path, worker_barrier):
    ready = worker_barrier(2)
    space = {"train.lr": [1e-3, 3e-3], "train.batch_size": [4, 8]}
    raw, path = _recipe(tiny_recipe, tmp_path, postgres_url, "shared", 6, space)
    procs = [_tune(path) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    trials = _trials(raw)
    assert sorted(t.number for t in trials) == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    points = sorted((t.params["train.lr"], t.params["train.batch_size"]) for t in trials)
    assert points == sorted(itertools.product(*space.values()))  # none lost, none twice
    assert {t.user_attrs["worker"]["pid"] for t in trials} == {p.pid for p in procs}
    assert len(list(ready.iterdir())) == 2  # both waited for the other before their first trial
    study_dir = Path(raw["output_dir"])
    assert not (study_dir / study_mod.DB).exists()  # the study is in the server, not in SQLite
    assert (study_dir / "trials.csv").read_text().count("\n") == 5  # the report, read from the server
    status = api.tune_status(study_dir)
    assert "4 of 4 done (4 complete" in status, status
    assert "postgresql://" in status and "postgresql+psycopg" not in status  # the URL as written


@pytest.mark.slow  # like tests/search/test_interrupt.py: two trainings and a kill, about 30 s here
def test_killing_one_worker_loses_only_its_running_trial(postgres_url, tiny_recipe, tmp_path):
    space = {"train.lr": [1e-3, 3e-3]}
    raw, path = _recipe(tiny_recipe, tmp_path, postgres_url, "killed", 60, space)
    victim, survivor = _tune(path), _tune(path)
    deadline = time.time() + 120
    doomed = None
    while time.time() < deadline and doomed is None:  # the victim inside a training
        time.sleep(0.3)
        try:
            running = _trials(raw, states=(TrialState.RUNNING,))
        except TailorError:  # the study is not created yet
            continue
        for t in running:
            if t.user_attrs.get("worker", {}).get("pid") == victim.pid and t.intermediate_values:
                doomed = t.number
    assert doomed is not None, "the victim never started a trial"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    assert f"trial {doomed}: its worker died" in out
    trials = _trials(raw)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [doomed]
    assert failed[0].user_attrs["error"] == "its worker process died"
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["train.lr"] for t in done) == space["train.lr"]  # the lost point ran again, once
    assert {t.user_attrs["worker"]["pid"] for t in done} == {survivor.pid}
