"""``torch.compile`` with inductor: what a team gets from one line, compile time included.

A session runs two graphs: batch 1, and one with a symbolic batch axis for every larger batch
(accuracy, agreement, throughput, memory). ``prepare`` compiles the one its case's batch runs;
the other is compiled the first time ``place`` sees a batch of its kind, which is before any
timed round. The seconds of both add up in ``compile_s``. A lane that uses one kind, as a worker
timing batch 1 does, never pays for the other.

A graph is what its case alone would compile, whatever the process compiled before it. Two
process-wide states would otherwise leak in: dynamo's automatic dynamic shapes, which make the
spatial axes symbolic once one ``forward`` code object (every zoo model's ``StagedClassifier``)
has been compiled at two sizes, and torchao's X86 inductor quantizer, whose import installs
inductor passes for every later compile. Either would change inductor's cache key, so a graph
already cached would compile again, and the first would also change the graph timed: a graph
symbolic on its spatial axes is not the static one its case deploys, and runs slower.
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
    def __init__(
        self, module: nn.Module, device: str, example: torch.Tensor, input_dtype: torch.dtype
    ) -> None:
        super().__init__(module, device, input_dtype=input_dtype)
        self._example = example
        #: Whether the batch-1 graph (False) and the symbolic-batch graph (True) are compiled.
        self._compiled: set[bool] = set()

    def compile_for(self, batch: int) -> None:
        """Compile the graph that batches of ``batch`` run, once, traced on a batch of that
        size laid out as real batches are: a graph traced on an expanded example (stride 0 on
        the batch axis) is guarded on that stride, and one traced at another size may be
        guarded to a range of sizes (a convolution picks its kernel by batch), so either way
        the first real batch would compile yet another graph."""
        batched = batch > 1
        if batched in self._compiled:
            return
        self._compiled.add(batched)
        example = self._example.expand(batch, *self._example.shape[1:])
        started = time.perf_counter()
        with step("compile"):
            self.run(self._placed(example.contiguous()))
            self.synchronize()
        self.compile_s = (self.compile_s or 0.0) + time.perf_counter() - started

    def place(self, batch: torch.Tensor) -> Any:
        self.compile_for(batch.shape[0])
        return self._placed(batch)

    def _placed(self, batch: torch.Tensor) -> Any:
        placed = super().place(batch)
        # Batches above one share a graph with a symbolic batch axis; batch 1 keeps its own
        # static graph, as it would in a bs1 deployment.
        if placed.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(placed, 0)
        return placed


@register_backend
class CompileBackend(Backend):
    name = "compile"
    unsupported = TORCH_UNSUPPORTED
    # The memory lane builds a session once untraced before it traces a second build (so a
    # figure holds no first use of a library): for a compiled module the second build finds its
    # graph in dynamo's cache and compiles nothing, and without that build the peak depends on
    # which graphs this process and inductor's on-disk cache already hold.
    no_session_figure = (
        "a compiled session's build peak is the state of dynamo's and inductor's caches, not "
        "the model's (nothing to compile once this process holds the graph, a full compile "
        "when neither cache does): no ceiling can hold it; its inference figure is gated"
    )

    def unavailable_reason(self, case: Case) -> str | None:
        if case.precision == "int8-static" and importlib.util.find_spec("torchao") is None:
            return "PT2E int8 needs torchao (pip install torchao)"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        _install_quantization_passes()
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
        # Static shapes except where ``_placed`` marks the batch axis: no axis turns symbolic
        # because another session compiled the same code at another size.
        compiled = cast(nn.Module, torch.compile(ready.module, backend="inductor", dynamic=False))
        session = CompiledSession(
            compiled, context.case.device, example, input_dtype=ready.input_dtype
        )
        session.compile_for(context.case.batch)
        return session


def _install_quantization_passes() -> None:
    """Import torchao's X86 inductor quantizer before the first compile of the process, not at
    the first int8-static build: its import sets inductor's pre-grad pass and registers its
    weight-packing and lowering passes for every compile that follows. They leave a graph
    without quantize nodes as it was (the same generated code), but they are part of inductor's
    cache key, so without this an fp32 graph is cached under two keys, by whether an int8-static
    session was built before it in the process."""
    if importlib.util.find_spec("torchao") is not None:
        importlib.import_module("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
