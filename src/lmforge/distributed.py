"""The processes of one run under `torchrun` / `accelerate launch`: which one writes the run folder, and where the
others wait for it. Without a launcher there is a single process: it is the main one and waiting is a no-op.

Kept free of module-level torch imports so that the CLI starts fast.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta

TIMEOUT = timedelta(minutes=30)  # transformers' default ddp_timeout: replicas wait this long for the main process


def join(cpu: bool) -> None:
    """Join the process group the launcher describes (gloo on CPU, nccl on GPUs) before the run folder is touched,
    so processes can wait for each other from the start; the Trainer later reuses this group. Replicas then log
    warnings only: the main process speaks for all of them."""
    from accelerate import PartialState

    PartialState(cpu=cpu, timeout=TIMEOUT)
    if not is_main_process():
        logging.getLogger("lmforge").setLevel(logging.WARNING)


def is_main_process() -> bool:
    """Global rank 0, the one process that writes the run folder."""
    group = _group()
    if group is not None:
        return group.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait until every process of the run gets here."""
    group = _group()
    if group is not None:
        group.barrier()


def _group():
    """torch.distributed once a process group is up, else None. torch is not imported just to learn that a
    process which never imported it has no group."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None
