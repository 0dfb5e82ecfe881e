"""``torch.compile`` with inductor: what a team gets from one line, compile time included.

``prepare`` compiles both graphs a session needs (batch 1, and a symbolic batch for the
throughput and agreement batches) by calling the module once with each, and records the seconds
as ``compile_s``, so compilation is measured once per session and never reaches a timed round.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, cast

import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.backends.eager import TORCH_UNSUPPORTED, EagerSession
from medgate.backends.torch_precision import for_precision
from medgate.core.matrix import Case
from medgate.core.registry import register_backend
from medgate.core.steps import step


class CompiledSession(EagerSession):
    def place(self, batch: torch.Tensor) -> Any:
        placed = super().place(batch)
        # Batches above one share a graph with a symbolic batch axis (one compile for the
        # throughput and agreement batches); batch 1 keeps its own static graph, as it would in
        # a bs1 deployment.
        if placed.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(placed, 0)
        return placed


@register_backend
class CompileBackend(Backend):
    name = "compile"
    unsupported = TORCH_UNSUPPORTED

    def unavailable_reason(self, case: Case) -> str | None:
        if case.precision == "int8-static" and importlib.util.find_spec("torchao") is None:
            return "PT2E int8 needs torchao (pip install torchao)"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        # Every session compiles a new module through the same forward() code object, and dynamo
        # counts those against one per-code limit (8), past which it silently runs eager: a
        # matrix compiles dozens of graphs in one process. Raise the limit to dynamo's own
        # accumulated one, and make hitting it an error, never an eager timing labelled compile.
        dynamo_config = torch._dynamo.config
        dynamo_config.recompile_limit = max(
            dynamo_config.recompile_limit, dynamo_config.accumulated_recompile_limit
        )
        dynamo_config.fail_on_recompile_limit_hit = True
        ready = for_precision(model, example, context)
        compiled = cast(nn.Module, torch.compile(ready.module, backend="inductor"))
        session = CompiledSession(compiled, context.case.device, input_dtype=ready.input_dtype)
        started = time.perf_counter()
        with step("compile"):
            for batch in (1, 2):
                session.run(session.place(example.expand(batch, *example.shape[1:])))
            session.synchronize()
        session.compile_s = time.perf_counter() - started
        return session
