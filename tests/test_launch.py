"""The `tailor` entry point restarts itself under tcmalloc where the system has it
(tailorkit/launch.py), and a run records which allocator it ran on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import recipe_dict
from tailorkit import launch, runtime


def test_the_restart_env_preloads_tcmalloc_once(monkeypatch):
    monkeypatch.setattr(launch, "tcmalloc_path", lambda: "/lib/libtcmalloc_minimal.so.4")
    env = launch.allocator_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "LD_PRELOAD": "/lib/libtcmalloc_minimal.so.4"}
    assert launch.allocator_env(env) is None  # the restarted process stays
    assert launch.allocator_env({"LD_PRELOAD": "/opt/libjemalloc.so"}) is None  # the user's wins
    assert launch.allocator_env({launch.ALLOCATOR_ENV: "system"}) is None
    monkeypatch.setattr(launch, "tcmalloc_path", lambda: None)
    assert launch.allocator_env({}) is None  # nothing to switch to


def test_this_process_allocator_is_named():
    assert runtime.allocator() in ("tcmalloc", "jemalloc", "system")


@pytest.mark.skipif(launch.tcmalloc_path() is None,
                    reason="tcmalloc is not installed (Debian: apt install libtcmalloc-minimal4)")
@pytest.mark.parametrize("setting", ["tcmalloc", "system"])
def test_tailor_trains_under_tcmalloc_unless_told_not_to(setting, tiny_model_dir, sentiment_csv, write_recipe,
                                                         tmp_path, monkeypatch):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", max_steps=2)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv(launch.ALLOCATOR_ENV, setting)
    result = subprocess.run([sys.executable, "-m", "tailorkit", "train", str(write_recipe(recipe))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["allocator"] == setting
