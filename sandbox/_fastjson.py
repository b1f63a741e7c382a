"""JSON through the C accelerator alone, for the hot path.

`import json` costs several milliseconds because `json.decoder` and
`json.encoder` import `re`; `sandbox-runc create` parses and writes config.json
and audit records on every container start.  `_json`'s scanner and encoder are
the same code `json` uses underneath, so results are identical.  Errors fall
back to the `json` module, which gives the usual message with line and column.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - every CPython has it
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"


class _Context:
    """The attributes `_json.make_scanner` reads from a JSONDecoder."""

    def __init__(self, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
                 parse_constant: Callable[[str], Any] | None) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = object_pairs_hook
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = parse_constant or _constant
        self.memo: dict[str, str] = {}


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def loads(text: str, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          parse_constant: Callable[[str], Any] | None = None) -> Any:
    """json.loads(text, object_pairs_hook=..., parse_constant=...), without importing json on success."""
    if _json is not None:
        scan = _json.make_scanner(_Context(object_pairs_hook, parse_constant))  # type: ignore[arg-type]
        start = 0
        while start < len(text) and text[start] in _WS:
            start += 1
        try:
            value, end = scan(text, start)
        except StopIteration:
            value, end = None, -1
        if end >= 0:
            while end < len(text) and text[end] in _WS:
                end += 1
            if end == len(text):
                return value
    import json  # the error path: let json say what is wrong, and where

    return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant)


def dumps(obj: Any, *, sort_keys: bool = False, ensure_ascii: bool = True, allow_nan: bool = True,
          default: Callable[[Any], Any] | None = None) -> str:
    """Compact json.dumps (separators "," and ":"), C encoder only."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(obj, sort_keys=sort_keys, ensure_ascii=ensure_ascii, allow_nan=allow_nan,
                          separators=(",", ":"), default=default)
    encode = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    encoder = _json.make_encoder({}, default or _no_default, encode, None, ":", ",", sort_keys, False, allow_nan)
    return "".join(encoder(obj, 0))


def _no_default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")
