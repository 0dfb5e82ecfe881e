"""A fixed small network timed beside every case, through the case's own backend: the machine's
speed, measured in the units the case runs in.

Timed just before each of the case's rounds, it sees what the case sees (a busy neighbour, a
lower clock, fewer free cores, the same runtime's thread pool), so ``case / reference`` compares
code across runs and across machines where milliseconds compare the machines. Running it on the
case's backend matters: a torch workload between ONNX Runtime rounds made the two thread pools
fight for the cores and turned ORT's rounds bimodal. Its shapes and weights never change; a
different workload would make every stored reference time meaningless.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from medgate.backends.base import Session

#: Part of every latency baseline; bump it when the network, its input or the timing changes.
VERSION = 1
CALLS_PER_ROUND = 3
INPUT_SHAPE = (1, 32, 20, 20)


def reference_network() -> nn.Module:
    """Two 3x3 convolutions and a classifier-sized GEMM: the kernels the zoo's time goes to.
    About 0.3 ms per call on 2 EPYC cores in eager fp32."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
    ).eval()


def reference_input() -> torch.Tensor:
    return torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(0))


class ReferenceWorkload:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.placed = session.place(reference_input())

    def run(self) -> None:
        self.session.run(self.placed)

    def time_once(self) -> float:
        """The fastest of ``CALLS_PER_ROUND`` calls: one call alone is as often the time of an
        interruption as of the machine; a busy machine slows every call, so the fastest too."""
        fastest = float("inf")
        for _ in range(CALLS_PER_ROUND):
            started = time.perf_counter()
            self.session.run(self.placed)
            self.session.synchronize()
            fastest = min(fastest, time.perf_counter() - started)
        return fastest

    def warm_up(self, calls: int = 20) -> None:
        for _ in range(calls):
            self.session.run(self.placed)
        self.session.synchronize()
