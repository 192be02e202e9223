"""The process set-up of a run: threads from the free cores, oneDNN's cache for bf16, and
bitsandbytes' kernel-hub warning dropped."""

from __future__ import annotations

import pytest

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


# -- bitsandbytes' kernel-hub warning (#21 item 14) ---------------------------------------------------

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


def test_the_kernel_hub_warning_is_dropped_and_the_loggers_other_messages_pass():
    import logging

    logger = logging.getLogger(BNB_CPU_LOGGER)
    hub = logger.makeRecord(BNB_CPU_LOGGER, logging.WARNING, "ops.py", 1,
                            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make "
                            "sure you already `pip install kernels` and the kernels >= 0.11.1",
                            ("No module named 'kernels'",), None)
    other = logger.makeRecord(BNB_CPU_LOGGER, logging.WARNING, "ops.py", 1, "something else", (), None)
    assert not logger.filter(hub)
    assert logger.filter(other)


def test_importing_peft_after_tailorkit_prints_no_kernel_hub_warning():
    """PEFT imports bitsandbytes whenever it is installed, as every LoRA command does."""
    import subprocess
    import sys

    pytest.importorskip("bitsandbytes")
    code = ("import tailorkit.cli, peft.tuners.lora, logging; "
            f"logging.getLogger('{BNB_CPU_LOGGER}').warning('another message')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "kernels-community" not in result.stderr
    assert "another message" in result.stderr


def test_a_process_in_the_foreground_of_a_terminal_knows_a_ctrl_c_reaches_its_group():
    """Under a terminal (a pseudo-terminal here) a launcher need not pass Ctrl-C on; without one
    (a pipe, a service) it must."""
    import os
    import pty
    import subprocess
    import sys

    code = "from tailorkit.runtime import terminal_interrupts_the_group as t; print('answer', t())"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, the pseudo-terminal its controlling terminal
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child has exited
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert b"answer True" in out, out
    piped = subprocess.run([sys.executable, "-c", code], stdin=subprocess.PIPE, capture_output=True,
                           text=True)
    assert "answer False" in piped.stdout
