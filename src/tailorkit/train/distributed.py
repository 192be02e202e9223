"""Data-parallel training on the processes torchrun starts: who this process is, its share of
each batch, and the one gradient all-reduce per optimiser step.

torchrun (`torch.distributed.run`, which `tailor train --nproc N` calls, and which `accelerate
launch` calls too) starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
address; `init` only joins that group (gloo on CPU, nccl on CUDA). Every process builds the same
model from the same seed (rank 0's weights are broadcast once to be sure) and walks the same
batches; each takes an interleaved share of every batch (`share`), and the summed gradients are
what one process computes on the whole batch.

Why not DistributedDataParallel: the loop sends some forwards around `model.forward` (the
frozen-prefix cache runs the top blocks on cached states), gradual unfreezing changes the
trained set mid-run, and gradient accumulation would need `no_sync`; one flat all-reduce after
the last micro-batch of a step does the same sum for all of them, once per optimiser step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tailorkit.runtime import stops_passed_on


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1  # processes on this machine (threads are shared among them)

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory, checkpoints and metrics."""
        return self.rank == 0


def world() -> World:
    """This process's place, from the variables torchrun sets (one process when unset)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                 int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))


def init(device: torch.device) -> World:
    """Join torchrun's process group (once per process); a no-op for one process."""
    w = world()
    if w.size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    return w


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def share(indices: list[int], w: World) -> list[int]:
    """This process's part of a batch: every size-th example from its rank (length-grouped
    batches are sorted by length, so interleaving gives each process as many long ones)."""
    return indices[w.rank :: w.size]


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_model(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere: every process starts from one model."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Each process's gradient becomes the sum over processes, in one flat all-reduce. A
    parameter without a gradient here (an empty share, an unused branch) counts as zeros."""
    if not active() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    """The sums over processes of a few numbers (the step's loss, a stop request)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj):
    """Every process's `obj`, in rank order, on every process (for RNG states)."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """`tailor train ... --nproc N`: the same command on N processes of this machine, through
    torchrun. Ctrl-C reaches every process (they share the terminal's process group); each
    finishes its step and rank 0 writes the checkpoint, so this waits for them. A signal to this
    process alone (`kill PID`, or a SIGINT not from its terminal) is passed on as SIGTERM, which
    torchrun gives every worker: the same clean stop. A stopped run exits 130."""
    logs = tempfile.TemporaryDirectory(prefix="tailor-torchrun-")  # else torchrun leaves one per launch
    cmd = [sys.executable, "-m", "tailorkit.train.torchrun", "--standalone", f"--nproc-per-node={nproc}",
           f"--log-dir={logs.name}", "-m", "tailorkit.cli", *argv]
    # torchrun itself handles SIGTERM only: its SIGINT handler would signal the workers a second
    # time, and a second Ctrl-C interrupts a worker at once, before its checkpoint
    env = {**os.environ, "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGTERM"}
    with logs, subprocess.Popen(cmd, env=env) as proc, \
            stops_passed_on(lambda: proc.send_signal(signal.SIGTERM)) as stopped:
        code = proc.wait()
    return 130 if stopped and code else code
