"""A backend of controllable speed for medgate's own latency tests.

Each run busy-waits until a deadline: ``MEDGATE_FAKE_MS`` (default 2) for a session of a zoo
model, 0.5 ms for the reference workload's, times the factors below, times noise drawn afresh in
every process: 3 % lognormal jitter per run, 5 % of runs interrupted (1.3-2x), and a 1 % shift
between processes. Spinning to a deadline makes the time independent of how fast this machine
happens to be, so the gate's logic is tested against noise of a known size; the real machine's
drift is measured by the smoke runs (README). The logits are the module's, computed once.

``MEDGATE_FAKE_CODE`` multiplies the zoo model's time (a code change: 1.15 is 15 % slower), as
does a ``fake_cost`` attribute of the model itself (a change to that model's code alone);
``MEDGATE_FAKE_CODE_STAGE`` limits it to one stage (``features`` or ``head``) and the whole
model. ``MEDGATE_FAKE_MACHINE`` multiplies every session's time, the reference workload's too
(a slower machine). ``MEDGATE_FAKE_NOISY_CALLS``: the first N runs of a model session alternate
0.4x and 2.5x, a burst of noise the later rounds do not have.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.core.registry import register_backend

REFERENCE = "medgate-reference"
RNG = np.random.default_rng()
RUN_SHIFT = float(RNG.lognormal(0, 0.01))


def _factor(name: str) -> float:
    return float(os.environ.get(name, "1"))


class FakeSpeedSession(Session):
    def __init__(self, module: nn.Module, seconds: float, noisy_calls: int) -> None:
        super().__init__("cpu")
        self.module = module
        self.seconds = seconds
        self.noisy_calls = noisy_calls
        self.calls = 0
        self._outputs: dict[int, torch.Tensor] = {}

    def run(self, placed: Any) -> torch.Tensor:
        seconds = self.seconds * RUN_SHIFT * float(RNG.lognormal(0, 0.03))
        if RNG.random() < 0.05:
            seconds *= float(RNG.uniform(1.3, 2.0))
        if self.calls < self.noisy_calls:
            seconds *= 0.4 if self.calls % 2 else 2.5
        self.calls += 1
        deadline = time.perf_counter() + seconds
        if id(placed) not in self._outputs:
            with torch.inference_mode():
                self._outputs[id(placed)] = self.module(placed)
        while time.perf_counter() < deadline:
            pass
        return self._outputs[id(placed)]


@register_backend
class FakeSpeedBackend(Backend):
    name = "fake_speed"
    devices = frozenset({"cpu"})

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        machine = _factor("MEDGATE_FAKE_MACHINE")
        if context.case.model == REFERENCE:
            return FakeSpeedSession(model.eval(), 0.5e-3 * machine, 0)
        # A model may carry its own cost (``fake_cost``): a code change of that model alone.
        code = _factor("MEDGATE_FAKE_CODE") * float(getattr(model, "fake_cost", 1.0))
        if context.stage not in ("", os.environ.get("MEDGATE_FAKE_CODE_STAGE", context.stage)):
            code = 1.0
        seconds = float(os.environ.get("MEDGATE_FAKE_MS", "2")) * 1e-3 * code * machine
        noisy = int(os.environ.get("MEDGATE_FAKE_NOISY_CALLS", "0"))
        return FakeSpeedSession(model.eval(), seconds, noisy)
