"""Parsing helpers for configuration: argument > env var > default.

One policy for bad values: an explicit argument or environment variable that
cannot be parsed raises ``ValueError`` naming the variable and the accepted
form. Misconfiguration is found at start-up, never silently replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value if value else None


def env_str(name: str, arg: str | None = None, default: str | None = None) -> str | None:
    if arg is not None:
        return arg
    value = _raw(name)
    return value if value is not None else default


def env_bool(name: str, arg: bool | None = None, default: bool = False) -> bool:
    if arg is not None:
        return bool(arg)
    value = _raw(name)
    if value is None:
        return default
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use true or false")


def env_float(
    name: str,
    arg: float | None = None,
    default: float | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    if arg is not None:
        value, source = float(arg), "argument"
    else:
        raw = _raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number") from None
        source = name
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{source}: {value!r} must be a finite number")
    if minimum is not None and value < minimum:
        raise ValueError(f"{source}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{source}: {value} is above the maximum {maximum}")
    return value


def env_int(
    name: str,
    arg: int | None = None,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    if arg is None:
        raw = _raw(name)
        if raw is None:
            return default
        try:
            arg = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not an integer") from None
        source = name
    else:
        source = "argument"
    if minimum is not None and arg < minimum:
        raise ValueError(f"{source}: {arg} is below the minimum {minimum}")
    if maximum is not None and arg > maximum:
        raise ValueError(f"{source}: {arg} is above the maximum {maximum}")
    return int(arg)


def env_choice(name: str, arg: str | None, default: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    value = env_str(name, arg, default)
    assert value is not None
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}")
    return value


def env_list(name: str, arg: Iterable[str] | None = None, default: Iterable[str] = ()) -> list[str]:
    if arg is not None:
        return [a for a in arg if a]
    raw = _raw(name)
    if raw is None:
        return list(default)
    return [part.strip() for part in raw.split(",") if part.strip()]
