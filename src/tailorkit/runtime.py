"""The process a run lives in: threads, oneDNN's cache, peak memory, library versions, and one
library warning that only alarms."""

from __future__ import annotations

import logging
import os
import platform
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import torch

ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
# bitsandbytes, which PEFT imports whenever it is installed (LoRA with no 4-bit base too), logs
# this on import on a CPU with AVX512-BF16: an optional fused 4-bit kernel is fetched from the
# Hugging Face Hub through the `kernels` package. Its own CPU 4-bit kernels run without it
# (QLoRA included), so the message is dropped; the logger's other messages pass.
KERNEL_HUB_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNEL_HUB_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _not_the_kernel_hub_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(KERNEL_HUB_WARNING)


def quiet_kernel_hub_warning() -> None:
    """Drop that one message; acts on imports of bitsandbytes after it (idempotent)."""
    logging.getLogger(KERNEL_HUB_LOGGER).addFilter(_not_the_kernel_hub_warning)


quiet_kernel_hub_warning()  # every command imports this module before any method imports PEFT


def default_threads() -> int:
    """Cores not busy right now: with the other core loaded, 2 threads ran slower than 1.

    Busy is measured over a quarter second from /proc/stat; the load average would still
    count a run that ended a minute ago and starve the next one."""
    cores = len(os.sched_getaffinity(0))
    busy = _busy_cores(0.25)
    if busy is None:
        busy = os.getloadavg()[0]
    return max(1, min(cores, round(cores - busy)))


def _busy_cores(seconds: float) -> float | None:
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return None
    return os.cpu_count() * (busy1 - busy0) / (total1 - total0)


def bound_onednn_cache(bf16: bool, modality: str) -> None:
    """Keep oneDNN's primitive cache small for bf16 text training.

    bf16 matmuls on CPU run through oneDNN, which caches one primitive per shape (1024 by
    default). Length-grouped batches come in dozens of widths, and for LoRA on tweets the cache
    held about 400 MB; 32 entries ran as fast (bench/RESULTS.md). Image models keep the default
    (not measured: a CNN's many fixed conv shapes could overflow a small cache). oneDNN reads
    the variable when it makes its first primitive, so this only acts before the process's
    first bf16 op, and a value the user set wins."""
    if bf16 and modality == "text":
        os.environ.setdefault(ONEDNN_CACHE, "32")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def resident_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak so far, an upper bound)."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return peak_rss_mb()


def reset_peak_rss() -> bool:
    """Start peak_rss_mb() again from the current resident memory (Linux: writing 5 to
    /proc/self/clear_refs), so each run of a process that runs several (the trials of a
    search) records its own peak; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def allocator() -> str:
    """The malloc this process runs on: tcmalloc or jemalloc when one is loaded (tailorkit's
    launcher preloads tcmalloc where installed, tailorkit/launch.py), else the C library's."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name in ("tcmalloc", "jemalloc") if f"lib{name}" in maps), "system")


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": version("transformers")}


def terminal_interrupts_the_group() -> bool:
    """Whether this process is the foreground of its terminal, where a Ctrl-C reaches its whole
    process group: its workers got the same SIGINT, and must not be sent a second stop."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no terminal (a pipe, a service, a test)
        return False


@contextmanager
def stops_passed_on(stop_workers: Callable[[], None]) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM to this launcher call `stop_workers` (which sends them
    SIGTERM, a clean stop), except a Ctrl-C from its terminal, which reached them already; yields
    the signals received, so the launcher can tell a stopped run after its workers exit."""
    stopped: list[int] = []

    def stop(signum, frame) -> None:
        stopped.append(signum)
        if signum == signal.SIGTERM or not terminal_interrupts_the_group():
            stop_workers()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
