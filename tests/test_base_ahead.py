"""What is sent to the workers ahead of each test (``medgate.base.ahead``): a group's work once,
before its first test; the next group's once nothing left in this one asks the workers, and
only when its model may be built."""

from __future__ import annotations

from medgate.base.ahead import AheadPlan, PlannedTest
from medgate.core.matrix import Case


def _case(backend: str, batch: int) -> Case:
    return Case("tiny_cnn", backend, "fp32", 16, batch, "cpu")


def _group(backend: str) -> list[PlannedTest]:
    return [
        PlannedTest(f"accuracy[{backend}]", _case(backend, 8), "accuracy"),
        PlannedTest(f"agreement[{backend}]", _case(backend, 8), None),
        PlannedTest(f"latency[{backend}]", _case(backend, 1), "latency"),
        PlannedTest(f"inference_memory[{backend}]", _case(backend, 4), "memory"),
        PlannedTest(f"session_memory[{backend}]", _case(backend, 1), None),
    ]


def _always(_: Case) -> bool:
    return True


def test_a_group_is_sent_before_its_first_test_and_the_next_once_this_one_is_done() -> None:
    plan = AheadPlan(_group("eager") + _group("onnxruntime"))
    assert plan.due("accuracy[eager]", _always) == [
        (_case("eager", 8), "accuracy"),
        (_case("eager", 1), "latency"),
        (_case("eager", 4), "memory"),
    ]
    for nodeid in ("agreement[eager]", "latency[eager]", "inference_memory[eager]"):
        assert plan.due(nodeid, _always) == []
    assert [asks for _, asks in plan.due("session_memory[eager]", _always)] == [
        "accuracy",
        "latency",
        "memory",
    ]
    assert plan.due("accuracy[onnxruntime]", _always) == []
    assert plan.due("session_memory[onnxruntime]", _always) == []


def test_the_next_group_waits_for_its_model() -> None:
    plan = AheadPlan(_group("eager") + _group("onnxruntime"))
    plan.due("accuracy[eager]", _always)
    assert plan.due("session_memory[eager]", lambda case: False) == []
    assert len(plan.due("accuracy[onnxruntime]", _always)) == 3


def test_a_test_outside_the_plan_sends_nothing() -> None:
    assert AheadPlan(_group("eager")).due("skipped[eager]", _always) == []
