"""Estimator settings: nested config dataclasses (defaults in code, each next to its component) filled from
YAML presets and ``key.sub=value`` overrides, validated field by field. Sensor calibration is not here: it
comes with the sequence or a Kalibr file.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from slam.messages import DataError

PRESET_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _coerce(value, kind, where: str):
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise DataError(f"expected a mapping, got {value!r}", field=where)
        return from_dict(kind, value, where)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise DataError(f"expected true or false, got {value!r}", field=where)
        return value
    if kind in (int, float):
        if isinstance(value, bool):
            raise DataError(f"expected a number, got {value!r}", field=where)
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise DataError(f"expected a number, got {value!r}", field=where) from None
        if kind is int and float(value) != number:
            raise DataError(f"expected an integer, got {value!r}", field=where)
        return number
    if kind is str:
        if not isinstance(value, (str, int, float)):
            raise DataError(f"expected a string, got {value!r}", field=where)
        return str(value)
    return value


def from_dict(cls, data: dict, where: str = ""):
    """An instance of dataclass ``cls`` from a (possibly partial) nested dict; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise DataError(f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
                        f"valid: {', '.join(sorted(names))}", field=where or None)
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            kwargs[name] = from_dict(kind, value, path)
        else:
            kwargs[name] = _coerce(value, kind, path)
    try:
        return cls(**kwargs)
    except DataError:
        raise
    except (TypeError, ValueError) as exc:  # the component's own validation
        raise DataError(str(exc), field=where or None) from None


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> dict:
    """``"backend.lag_s=2.5"`` -> ``{"backend": {"lag_s": 2.5}}`` (the value is read as YAML)."""
    if "=" not in text:
        raise DataError(f"expected KEY=VALUE (e.g. backend.lag_s=2.5), got {text!r}", field="--set")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(cls, preset: str | Path | None = None, overrides: list[str] | None = None):
    """``cls`` filled from a preset name (``slam/presets``) or a YAML file, then ``overrides``."""
    data: dict = {}
    if preset is not None:
        path = Path(preset)
        if not path.suffix:
            path = PRESET_DIR / f"{preset}.yaml"
            if not path.exists():
                raise DataError(f"unknown preset {str(preset)!r}; presets: {', '.join(presets())}",
                                field="config")
        if not path.exists():
            raise DataError("config file not found", path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise DataError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path,
                            mark.line + 1 if mark else None) from None
        if not isinstance(loaded, dict):
            raise DataError("a config file must hold a mapping", path)
        data = _merge(data, loaded)
    for text in overrides or []:
        data = _merge(data, parse_override(text))
    return from_dict(cls, data)


def dump_yaml(config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
