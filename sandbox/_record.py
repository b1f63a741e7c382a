"""`@record`: frozen-dataclass semantics at no import cost, for the models on the hot path.

`sandbox-runc create` runs on every container start, and `import dataclasses`
alone (it pulls in `inspect`, `re` and `typing`) costs more than the whole
budget for sandbox's share of a create.  `@record` reads the same class syntax
(annotated fields, defaults, `field(default_factory=...)`), gives `__init__`,
`__eq__`, `__hash__`, `__repr__`, immutability and `replace()`, and type checkers
treat it as a dataclass through PEP 681.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw):  # noqa: D103 - runtime no-op; only type checkers read it
        return lambda f: f

_MISSING = object()


class _Field:
    __slots__ = ("default", "default_factory", "compare")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None, compare: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.compare = compare


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None, compare: bool = True,
          hash: bool | None = None) -> Any:  # noqa: A002 - mirrors dataclasses.field
    return _Field(default, default_factory, compare and hash is not False)


def _fields_of(cls: type) -> list[tuple[str, Any, Callable[[], Any] | None, bool]]:
    out = []
    for klass in reversed(cls.__mro__[:-1]):
        for name in klass.__dict__.get("__annotations__", {}):
            if name.startswith("_") or name in ("TYPE_CHECKING",):
                continue
            raw = klass.__dict__.get(name, _MISSING)
            if isinstance(raw, _Field):
                out.append((name, raw.default, raw.default_factory, raw.compare))
            else:
                out.append((name, raw, None, True))
    return out


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T] | None = None, *, frozen: bool = True) -> Any:
    """Decorate a class as a record; `@record(frozen=False)` allows assignment."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def _make(cls: type[T], frozen: bool) -> type[T]:
    fields = _fields_of(cls)
    names = tuple(f[0] for f in fields)
    compared = tuple(f[0] for f in fields if f[3])
    for name in names:
        if isinstance(cls.__dict__.get(name), _Field):
            delattr(cls, name)  # as dataclasses does: plain defaults stay readable on the class

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments, {len(args)} given")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {k!r}")
            if k in values:
                raise TypeError(f"{cls.__name__}() got multiple values for {k!r}")
            values[k] = v
        for name, default, factory, _ in fields:
            if name not in values:
                if factory is not None:
                    values[name] = factory()
                elif default is not _MISSING:
                    values[name] = default
                else:
                    raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
            object.__setattr__(self, name, values[name])

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is frozen: cannot assign {name!r}")

    def __eq__(self: Any, other: Any) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in compared)

    def __hash__(self: Any) -> int:
        if not frozen:
            raise TypeError(f"unhashable type: {cls.__name__!r}")
        return hash(tuple(_hashable(getattr(self, n)) for n in compared))

    def __repr__(self: Any) -> str:
        return f"{cls.__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"

    cls.__init__ = __init__  # type: ignore[misc,method-assign]
    if frozen:
        cls.__setattr__ = __setattr__  # type: ignore[assignment]
    cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
    cls.__hash__ = __hash__  # type: ignore[method-assign,assignment]
    cls.__repr__ = __repr__  # type: ignore[method-assign,assignment]
    cls.__record_fields__ = names  # type: ignore[attr-defined]
    return cls


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


def replace(obj: T, **changes: Any) -> T:
    """A copy of `obj` with some fields changed (dataclasses.replace for records)."""
    names = obj.__class__.__record_fields__  # type: ignore[attr-defined]
    values = {n: getattr(obj, n) for n in names}
    values.update(changes)
    return obj.__class__(**values)


def fields(obj: Any) -> tuple[str, ...]:
    return obj.__class__.__record_fields__  # type: ignore[no-any-return]
