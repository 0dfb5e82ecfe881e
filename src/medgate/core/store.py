"""What every gate's store shares: one reviewed JSON file per model (and machine, for latency),
read with a schema check and field-by-field validation whose errors name the file, the field
path and the fix, and written atomically with sorted keys, only under ``--update-baselines``."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from medgate.core.files import BaselineError, atomic_write_bytes, load_json, rerecord_hint

T = TypeVar("T")


class Fields:
    """Validates one parsed file; every refusal names the file, the field and the fix."""

    def __init__(self, path: Path, lane: str) -> None:
        self.path = path
        self.lane = lane

    def fail(self, where: str, problem: str) -> BaselineError:
        return BaselineError(
            f"{self.path}: field {where}: {problem}; fix the field, or delete the file and "
            f"re-record it with {rerecord_hint(self.lane)}"
        )

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, found {type(value).__name__}")
        return value

    def text(self, parent: dict[str, Any], key: str, where: str) -> str:
        field = f"{where}.{key}" if where != "(top level)" else key
        if key not in parent:
            raise self.fail(field, "missing")
        value = parent[key]
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, found {value!r}")
        return value


class Store(ABC, Generic[T]):
    """One lane's files. A subclass says how its value is parsed from the file's fields and
    dumped to them; the schema, the validation's messages and the write are shared."""

    lane: ClassVar[str]
    schema: ClassVar[int]
    #: Older schemas this medgate still reads (their fields are upgraded in ``parse``).
    readable: ClassVar[tuple[int, ...]] = ()

    def read(self, path: Path) -> T | None:
        """The file's value, None when there is none; ``BaselineError`` when it is unusable."""
        payload = load_json(path, self.lane)
        if payload is None:
            return None
        fields = Fields(path, self.lane)
        schema = payload.get("schema")
        if schema != self.schema and schema not in self.readable:
            raise self.schema_error(fields, schema)
        return self.parse(payload, fields, schema)

    def schema_error(self, fields: Fields, schema: Any) -> BaselineError:
        return fields.fail("schema", f"is {schema!r}, this medgate reads schema {self.schema}")

    def dumps(self, value: T) -> str:
        payload = {"schema": self.schema, **self.dump(value)}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    def write(self, path: Path, value: T) -> None:
        atomic_write_bytes(path, self.dumps(value).encode())

    @abstractmethod
    def parse(self, payload: dict[str, Any], fields: Fields, schema: int) -> T: ...

    @abstractmethod
    def dump(self, value: T) -> dict[str, Any]: ...
