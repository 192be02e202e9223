"""The `tailor` command's entry point: it restarts itself once under tcmalloc where the system
has it, before Python has allocated anything that matters.

glibc's malloc keeps freed activation memory in holes that the next step's larger tensors do
not fit, so a causal-LM LoRA run's resident memory climbs over its first steps: SmolLM2-135M
LoRA steps at batch 8 x up to 128 peaked at about 2,850 MB under glibc and 2,300 MB under
tcmalloc, at the same speed (bench/allocator_steps.py; docs/causal-lm.md, "Memory"). Telling
glibc to return every freed block of 128 KiB or more instead (its mmap threshold) took the peak
as low but made the steps about 40% slower: every activation is then freshly mapped and
page-faulted. tcmalloc reuses freed memory by size class and has neither cost.

An allocator must be chosen before the process starts, so the command re-executes itself with
LD_PRELOAD set (Debian/Ubuntu: `apt install libtcmalloc-minimal4`). Processes it starts
(`--nproc` workers) inherit it. `TAILOR_ALLOCATOR=system` keeps the C library's malloc; an
LD_PRELOAD the user set already is left alone.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

ALLOCATOR_ENV = "TAILOR_ALLOCATOR"  # "system": no switch
TCMALLOC = "libtcmalloc_minimal.so.4"
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                "/usr/local/lib")


def tcmalloc_path() -> str | None:
    """The tcmalloc library on this system (a path, or a name the loader finds), or None."""
    for folder in LIBRARY_DIRS:
        if (Path(folder) / TCMALLOC).is_file():
            return str(Path(folder) / TCMALLOC)
    return ctypes.util.find_library("tcmalloc_minimal")  # ldconfig's cache: other folders, versions


def allocator_env(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The environment to restart under tcmalloc with, or None to stay (not Linux, switched off,
    an LD_PRELOAD already set, or no tcmalloc installed)."""
    environ = dict(os.environ if environ is None else environ)
    if (not sys.platform.startswith("linux") or environ.get(ALLOCATOR_ENV, "tcmalloc") == "system"
            or environ.get("LD_PRELOAD")):
        return None
    library = tcmalloc_path()
    if library is None:
        return None
    return {**environ, "LD_PRELOAD": library}  # set, so the restarted process stays


def main() -> int:
    env = allocator_env()
    if env is not None:
        os.execve(sys.executable, [sys.executable, "-m", "tailorkit", *sys.argv[1:]], env)
    from tailorkit.cli import main as cli_main

    return cli_main()
