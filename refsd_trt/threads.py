"""``one_thread()``: run a block of small torch ops on one intra-op thread.

Tensors of a few dozen to a few hundred thousand numbers (pose fitting, avatar crops at 256 px) gain
little from a second thread and lose much when the cores are shared: a thread that is descheduled
holds every other one at the op's barrier. Measured on this project's 2-core machine under load, the
avatar render took 51 ms of wall and 34 ms of CPU time on one thread, 347 ms and 234 ms on two; a
fitting step 2 ms of CPU on one thread, 12 ms on two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """The count is not scoped by torch itself: it is restored on leaving, and torch work that other
    threads start meanwhile may also run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
