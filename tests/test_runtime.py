"""The process set-up of a run: threads from the free cores, oneDNN's cache for bf16."""

from __future__ import annotations

from tailorkit import runtime


def test_default_threads_follow_the_cores_free_now(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(runtime, "_busy_cores", lambda seconds: 0.1)
    assert runtime.default_threads() == 4
    monkeypatch.setattr(runtime, "_busy_cores", lambda seconds: 2.6)
    assert runtime.default_threads() == 1  # round(4 - 2.6) = 1
    monkeypatch.setattr(runtime, "_busy_cores", lambda seconds: 3.9)
    assert runtime.default_threads() == 1  # never fewer than one
    monkeypatch.undo()
    busy = runtime._busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= os.cpu_count()


def test_bf16_text_training_bounds_the_onednn_cache_unless_the_user_set_it(monkeypatch):
    import os

    monkeypatch.delenv(runtime.ONEDNN_CACHE, raising=False)
    runtime.bound_onednn_cache(bf16=False, modality="text")
    runtime.bound_onednn_cache(bf16=True, modality="image")
    assert runtime.ONEDNN_CACHE not in os.environ
    runtime.bound_onednn_cache(bf16=True, modality="text")
    assert os.environ[runtime.ONEDNN_CACHE] == "32"
    monkeypatch.setenv(runtime.ONEDNN_CACHE, "512")
    runtime.bound_onednn_cache(bf16=True, modality="text")
    assert os.environ[runtime.ONEDNN_CACHE] == "512"
