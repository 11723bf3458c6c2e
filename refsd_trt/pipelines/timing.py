"""How a method reports its stages' time: ``timer(stage_name)`` is a context manager charging the
block to that stage (``refsd_trt.stages.StageTimer`` is one); the default records nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

Timer = Callable[[str], AbstractContextManager]


def no_timer(stage: str) -> AbstractContextManager:
    return contextlib.nullcontext()
