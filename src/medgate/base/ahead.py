"""Which work to send the base run's workers ahead of each test, so that they build while this
process runs other tests.

Tests of one prepared session run back to back (``pytest_collection_modifyitems``). Before the
first of them runs, the workers are sent what the whole group will ask of them (each test's
``@pytest.mark.medgate(base=...)``): they build and warm up while this process builds its own
session and evaluates. Once no test left in a group asks the workers for anything, the next
group's work is sent too, so that they build it while this process measures its own memory.
Nothing is timed meanwhile: a timed block first reads every reply the workers owe
(``BaseRun._ask``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from medgate.core.matrix import Case

#: What a test can ask of the workers (``BaseRun.ahead``).
ASKS = ("latency", "memory", "accuracy")


@dataclass(frozen=True)
class PlannedTest:
    nodeid: str
    case: Case
    #: What the test asks of the workers against the base, one of ``ASKS``, or None.
    asks: str | None


@dataclass
class AheadPlan:
    """Built from the tests that will run, in their order."""

    tests: list[PlannedTest]
    _groups: list[list[PlannedTest]] = field(default_factory=list, init=False)
    _where: dict[str, tuple[int, int]] = field(default_factory=dict, init=False)
    _sent: set[int] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        for test in self.tests:
            if not self._groups or self._groups[-1][0].case.session_key != test.case.session_key:
                self._groups.append([])
            self._where[test.nodeid] = (len(self._groups) - 1, len(self._groups[-1]))
            self._groups[-1].append(test)

    def due(self, nodeid: str, ready: Callable[[Case], bool]) -> list[tuple[Case, str]]:
        """What to send before ``nodeid`` runs: its group's work, once; and the next group's,
        once no test from ``nodeid`` on in this group asks anything and ``ready`` says the next
        group's model may be built now (its checkpoint trained)."""
        if nodeid not in self._where:
            return []
        group, position = self._where[nodeid]
        due = self._take(group)
        rest = self._groups[group][position:]
        following = group + 1
        if (
            following < len(self._groups)
            and not any(test.asks for test in rest)
            and ready(self._groups[following][0].case)
        ):
            due += self._take(following)
        return due

    def _take(self, group: int) -> list[tuple[Case, str]]:
        if group in self._sent:
            return []
        self._sent.add(group)
        return [(test.case, test.asks) for test in self._groups[group] if test.asks]
