"""Words for a refused config table: one ``ConfigError`` naming the file, the table, the key, the bad value, the fix.

``refusal`` turns the first error pydantic found in a table (``generators.config_tables``, docs/architecture.md §9)
into the message the command line prints, in the project's voice::

    bad.toml: [run] fps must be a number, got 'fast' (e.g. fps = 8.0)
    bad.toml: unknown [run] key 'widht'
      fix: did you mean 'width'? [run] keys are: width, height, ...

Invariants: a refusal never quotes pydantic (no "Input should be", no error URL, no traceback); it quotes only the
value of the key it names (a secret is refused before any table is validated, ``generators.profiles``); an unknown
key is answered with the closest known ones (``errors.close_matches``, difflib) and the whole list.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from codirector.errors import ConfigError, close_matches

_CUSTOM = ("number", "usd")  # errors whose message is already the words "must be ..." takes (config_tables)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def refusal(error: ValidationError, model: type[BaseModel], data: Mapping[str, Any], *, source: str | None,
            table: str | None = None, owner: str | None = None) -> ConfigError:
    """The ``ConfigError`` for ``error``, raised validating ``data`` (a ``[table]`` of ``source``) as ``model``.

    ``owner`` names who takes the table's keys when it is not the file's format (a backend: "the 'fal' video
    backend")."""
    first = error.errors(include_url=False)[0]
    src = f"{source}: " if source else ""
    path: list[str] = [table] if table else []
    current: Any = model
    value: Any = data
    loc = list(first["loc"])
    while loc:
        part = str(loc.pop(0))
        value = value.get(part) if isinstance(value, Mapping) else first["input"]
        fields = _fields(current)
        if fields is None:  # a table keyed by free names (``[prices."MODEL"]``): this part names one entry
            path.append(toml_key(part))
            current = _table_type(get_args(current)[1] if get_args(current) else Any)
            if current is None or not loc:
                return _not_a_table(src, path, value)
            continue
        if part not in fields:
            return _unknown(part, fields, src, path, owner)
        field = fields[part]
        inner = _table_type(field.annotation)
        if inner is not None and loc:
            path.append(part)
            current = inner
            continue
        if inner is not None:
            return _not_a_table(src, [*path, part], value)
        what = str(first["msg"]) if first["type"] in _CUSTOM else describe(field.annotation)
        where = f"[{'.'.join(path)}] {part}" if path else part
        example = example_of(part, field)
        fix = f" (e.g. {example})" if example else ""
        return ConfigError(f"{src}{where} must be {what}, got {shown(value)}{fix}")
    return _not_a_table(src, path, data)


def _not_a_table(src: str, path: list[str], value: Any) -> ConfigError:
    table = f"[{'.'.join(path)}]"
    return ConfigError(f"{src}{table} must be a table, got {shown(value)}",
                       hint=f"write {table} on a line of its own, with its keys (key = value) on the lines below it")


def shown(value: Any) -> str:
    """A bad value as the message quotes it: as Python shows it, but ``true``/``false`` as the file wrote them."""
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def _unknown(key: str, fields: dict[str, FieldInfo], src: str, path: list[str], owner: str | None) -> ConfigError:
    names = list(fields)
    close = close_matches(key, names)
    mean = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    if not path:
        shown = ", ".join(f"[{n}]" if _table_type(fields[n].annotation) is not None else n for n in names)
        return ConfigError(f"{src}unknown key {key!r}", hint=f"{mean}top-level keys are {shown}")
    table = f"[{'.'.join(path)}]"
    if owner:
        return ConfigError(f"{src}unknown {table} key {key!r} for {owner}",
                           hint=f"{mean}{owner} takes {', '.join(names)}")
    return ConfigError(f"{src}unknown {table} key {key!r}", hint=f"{mean}{table} keys are {', '.join(names)}")


def _fields(current: Any) -> dict[str, FieldInfo] | None:
    """A model's fields by the name a file spells them (its alias, where it has one); ``None`` for a mapping."""
    if isinstance(current, type) and issubclass(current, BaseModel):
        return {f.alias or name: f for name, f in current.model_fields.items()}
    return None


def _table_type(annotation: Any) -> Any:
    """The model or ``dict[...]`` a value of ``annotation`` is, when it is a table (optional or not); else ``None``."""
    members = [a for a in get_args(annotation) if a is not type(None)] if _is_union(annotation) else [annotation]
    for a in members:
        if (isinstance(a, type) and issubclass(a, BaseModel)) or a is dict or get_origin(a) is dict:
            return a
    return None


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def describe(annotation: Any) -> str:
    """What a value of ``annotation`` is, in words: "a whole number", "a number", "one of 'a', 'b'", ..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return "any value"
    if origin is Annotated:
        return describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(annotation):
        members = [a for a in args if a is not type(None)]
        if set(members) == {int, float}:
            return "a number"
        return " or ".join(dict.fromkeys(describe(a) for a in members))
    simple = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", type: "a class"}
    if annotation in simple:
        return simple[annotation]
    if origin in (list, tuple) or annotation in (list, tuple):
        inner = describe(args[0]) if args else "any value"
        return "a list" if inner == "any value" else f"a list of {_plural(inner)}"
    if _table_type(annotation) is not None:
        return "a table"
    return f"a {getattr(annotation, '__name__', annotation)}"


def _plural(words: str) -> str:
    return " or ".join(w.removeprefix("a ") + "s" if w.startswith("a ") else w for w in words.split(" or "))


def example_of(key: str, field: FieldInfo) -> str | None:
    """``key = VALUE`` as a TOML line: the key's default where it has one, else a value of its type."""
    default = field.get_default(call_default_factory=False)
    if default in (None, "") and field.examples:
        default = field.examples[0]
    written = toml_value(default) if default is not None else None
    if written is None:
        written = _typical(field.annotation)
    return f"{key} = {written}" if written is not None else None


def _typical(annotation: Any) -> str | None:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _typical(args[0])
    if origin is Literal:
        return toml_value(args[0])
    if _is_union(annotation):
        members = [a for a in args if a is not type(None)]
        return "1.0" if set(members) == {int, float} else next(filter(None, map(_typical, members)), None)
    return {bool: "true", int: "1", float: "1.0", str: '"..."'}.get(annotation)


def toml_value(value: Any) -> str | None:
    """``value`` as TOML writes it, for the plain values an example shows (else ``None``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        items = [toml_value(v) for v in value]
        return None if None in items else "[" + ", ".join(str(i) for i in items) + "]"
    return None


def toml_key(key: str) -> str:
    """A key as a TOML table header spells it: bare when it can be, else quoted (``prices."gpt-4.1"``)."""
    return key if _BARE_KEY.match(key) else json.dumps(key)


__all__ = ["describe", "example_of", "refusal", "shown", "toml_key", "toml_value"]
