"""Block bodies into typed argument objects, by declarative schemas.

A component declares its arguments as a dataclass whose fields say, through
:func:`attr` and :func:`block`, how they are spelled in the file::

    @dataclass
    class Arguments:
        targets: list[dict[str, str]] = attr(required=True)
        forward_to: list[Appendable] = attr(required=True)
        scrape_interval: Duration = attr(default=Duration("1m"))
        basic_auth: BasicAuth | None = block()
        rule: list[Rule] = block()

        def validate(self) -> None:  # optional; raise ValueError
            ...

:func:`decode_body` evaluates every attribute, decodes every nested block,
collects *all* the problems with their positions (unknown names, missing
required ones, duplicates, type errors, ``validate`` failures) and raises
them together, so a user fixes a block in one round. Field types are those
:func:`agent.syntax.value.convert` knows, plus dataclasses for blocks:
``X`` (a block that may be omitted, then defaulted), ``X | None`` (absent is
None) and ``list[X]`` (repeated block).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any, TypeVar

from agent.syntax import ast, vm
from agent.syntax.diag import NO_POS, Diagnostic, DiagnosticsError, Pos
from agent.syntax.value import ConvertError, Duration, Secret, convert, type_name

T = TypeVar("T")

_META_KEY = "alloy"
_NONE_TYPE = type(None)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: str  # "attr" or "block"
    name: str | None
    required: bool


def attr(
    name: str | None = None,
    default: Any = dataclasses.MISSING,
    *,
    required: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A field set by ``name = value`` in the block (``name`` defaults to the field's name).

    Without a default the field is None when the attribute is absent; a list or
    dict default is copied for every instance.
    """
    if default is not dataclasses.MISSING and isinstance(default, list | dict | set):
        frozen = default
        default_factory = lambda: copy.deepcopy(frozen)  # noqa: E731
        default = dataclasses.MISSING
    if default is dataclasses.MISSING and default_factory is dataclasses.MISSING:
        default = None
    meta = {_META_KEY: FieldSpec("attr", name, required)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def block(
    name: str | None = None,
    *,
    required: bool = False,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A field set by a nested ``name { ... }`` block (dotted names allowed: ``"a.b"``).

    When the block is absent the field gets its default; without one, None for
    ``X | None``, an empty list for ``list[X]`` and ``X()`` built from its
    defaults for a plain dataclass ``X``.
    """
    meta = {_META_KEY: FieldSpec("block", name, required)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(
        default=None if default is dataclasses.MISSING else default, metadata=meta
    )


def label() -> Any:
    """A field that receives a nested block's label: ``target "name" { ... }`` (the block then requires one)."""
    return dataclasses.field(default="", metadata={_META_KEY: FieldSpec("label", None, True)})


@dataclasses.dataclass(slots=True)
class _Field:
    attr_name: str  # the Python attribute
    name: str  # as written in the file
    kind: str
    required: bool
    type: Any
    block_type: Any = None  # the dataclass of a block field
    repeated: bool = False
    optional: bool = False
    has_default: bool = False


@dataclasses.dataclass(slots=True)
class _Schema:
    fields: list[_Field]
    attrs: dict[str, _Field]
    blocks: dict[str, _Field]
    label: _Field | None = None


_SCHEMAS: dict[type, _Schema] = {}


def _block_shape(typ: Any) -> tuple[Any, bool, bool]:
    """(dataclass, repeated, optional) for a block field's type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(typ) if a is not _NONE_TYPE]
        if len(members) == 1:
            inner, repeated, _ = _block_shape(members[0])
            return inner, repeated, True
    if origin is list:
        (inner,) = typing.get_args(typ)
        return inner, True, False
    return typ, False, False


def schema_of(cls: type) -> _Schema:
    info = _SCHEMAS.get(cls)
    if info is not None:
        return info
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass schema")
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(
            f"cannot resolve the field types of {cls.__qualname__} ({exc}); define schemas at module level"
        ) from None
    fields: list[_Field] = []
    for f in dataclasses.fields(cls):
        spec: FieldSpec | None = f.metadata.get(_META_KEY)
        if spec is None:
            spec = FieldSpec("attr", None, False)
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        fld = _Field(
            f.name,
            spec.name or f.name,
            spec.kind,
            spec.required,
            hints[f.name],
            has_default=has_default,
        )
        if spec.kind == "block":
            inner, fld.repeated, fld.optional = _block_shape(fld.type)
            if not dataclasses.is_dataclass(inner):
                raise TypeError(
                    f"{cls.__name__}.{f.name}: a block field needs a dataclass type, got {inner!r}"
                )
            fld.block_type = inner
        fields.append(fld)
    labels = [f for f in fields if f.kind == "label"]
    fields = [f for f in fields if f.kind != "label"]
    info = _Schema(
        fields,
        {f.name: f for f in fields if f.kind == "attr"},
        {f.name: f for f in fields if f.kind == "block"},
        labels[0] if labels else None,
    )
    _SCHEMAS[cls] = info
    return info


def _default_instance(cls: type[T]) -> T:
    """``cls`` built from its field defaults (None where a field has none)."""
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.init:
            kwargs[f.name] = None
    return cls(**kwargs)


def _absent_block_value(fld: _Field, obj_default: Any) -> Any:
    if fld.repeated:
        return [] if obj_default is None else obj_default
    if obj_default is not None or fld.optional:
        return obj_default
    return _default_instance(fld.block_type)


class _Collector:
    __slots__ = ("diags",)

    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []

    def add(self, pos: Pos, message: str) -> None:
        self.diags.append(Diagnostic(pos, message))


def decode_body(body: list[ast.Stmt], schema: type[T], scope: vm.Scope, pos: Pos = NO_POS) -> T:
    """Evaluate ``body`` into a ``schema`` instance; all problems are raised together as DiagnosticsError.

    ``pos`` is where the block starts; errors about the block as a whole (a
    missing required attribute, a ``validate`` failure) are reported there.
    """
    errs = _Collector()
    obj = _decode_into(body, schema, scope, pos, errs)
    if errs.diags:
        raise DiagnosticsError(errs.diags)
    return obj  # type: ignore[return-value]


def decode_block(stmt: ast.Block, schema: type[T], scope: vm.Scope) -> T:
    """:func:`decode_body` for a block statement (its label is the caller's business)."""
    return decode_body(stmt.body, schema, scope, stmt.pos)


def _decode_into(
    body: list[ast.Stmt],
    schema: type,
    scope: vm.Scope,
    pos: Pos,
    errs: _Collector,
    label: str | None = None,
) -> Any:
    info = schema_of(schema)
    values: dict[str, Any] = {}
    if info.label is not None and label is not None:
        values[info.label.attr_name] = label
    seen_attrs: dict[str, ast.Attribute] = {}
    seen_blocks: dict[str, list[ast.Block]] = {}
    before = len(errs.diags)
    for stmt in body:
        if isinstance(stmt, ast.Attribute):
            name = stmt.name.name
            fld = info.attrs.get(name)
            if fld is None:
                if name in info.blocks:
                    errs.add(
                        stmt.name.pos, f'"{name}" must be a block, but is used as an attribute'
                    )
                else:
                    errs.add(stmt.name.pos, f'unrecognized attribute name "{name}"')
                continue
            if name in seen_attrs:
                errs.add(stmt.name.pos, f'attribute "{name}" may only be set once')
                continue
            seen_attrs[name] = stmt
            try:
                v = vm.evaluate(stmt.value, scope)
            except DiagnosticsError as exc:
                errs.diags.extend(exc.diagnostics)
                continue
            try:
                values[fld.attr_name] = convert(v, fld.type)
            except ConvertError as exc:
                errs.add(ast.start_pos(stmt.value), str(exc))
        elif isinstance(stmt, ast.Block):
            name = stmt.full_name
            fld = info.blocks.get(name)
            if fld is None:
                if name in info.attrs:
                    errs.add(stmt.pos, f'"{name}" must be an attribute, but is used as a block')
                else:
                    errs.add(stmt.pos, f'unrecognized block name "{name}"')
                continue
            labelled = schema_of(fld.block_type).label is not None
            if stmt.label is not None and not labelled:
                errs.add(
                    stmt.label_pos if stmt.label_pos.valid else stmt.pos,
                    f'block "{name}" does not support specifying labels',
                )
                continue
            if stmt.label is None and labelled:
                errs.add(stmt.pos, f'block "{name}" requires non-empty label')
                continue
            seen_blocks.setdefault(name, []).append(stmt)
    for name, stmts in seen_blocks.items():
        fld = info.blocks[name]
        if fld.repeated:
            values[fld.attr_name] = [
                _decode_into(b.body, fld.block_type, scope, b.pos, errs, b.label) for b in stmts
            ]
            continue
        for extra in stmts[1:]:
            errs.add(extra.pos, f'block "{name}" may only be specified once')
        values[fld.attr_name] = _decode_into(
            stmts[0].body, fld.block_type, scope, stmts[0].pos, errs, stmts[0].label
        )
    for fld in info.fields:
        if not fld.required:
            continue
        if fld.kind == "attr" and fld.name not in seen_attrs:
            errs.add(pos, f'missing required attribute "{fld.name}"')
        elif fld.kind == "block" and fld.name not in seen_blocks:
            errs.add(pos, f'missing required block "{fld.name}"')
    if len(errs.diags) > before:
        return None
    try:
        obj = schema(**values)
    except Exception as exc:  # noqa: BLE001 - a schema's __post_init__ failing is the user's error
        errs.add(pos, str(exc))
        return None
    for fld in info.fields:
        if fld.kind == "block" and fld.name not in seen_blocks:
            setattr(obj, fld.attr_name, _absent_block_value(fld, getattr(obj, fld.attr_name)))
    _validate(obj, pos, errs)
    return obj


def _validate(obj: Any, pos: Pos, errs: _Collector) -> None:
    check = getattr(obj, "validate", None)
    if check is None:
        return
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any validate() failure is reported at the block, never a crash
        errs.add(pos, str(exc))


def object_to_dataclass(v: dict[str, Any], cls: type[T]) -> T:
    """An object value into a schema dataclass, by the fields' Alloy names (used by ``convert``)."""
    info = schema_of(cls)
    values: dict[str, Any] = {}
    for key, x in v.items():
        fld = info.attrs.get(key) or info.blocks.get(key)
        if fld is None:
            raise ConvertError(f'unrecognized field "{key}"')
        try:
            if fld.kind == "block":
                typ = list[fld.block_type] if fld.repeated else fld.block_type  # type: ignore[name-defined]
                values[fld.attr_name] = convert(x, typ)
            else:
                values[fld.attr_name] = convert(x, fld.type)
        except ConvertError as exc:
            raise exc.within("." + key) from None
    for fld in info.fields:
        if fld.required and fld.name not in v:
            raise ConvertError(f'missing required field "{fld.name}"')
    obj = cls(**values)
    for fld in info.fields:
        if fld.kind == "block" and fld.name not in v:
            setattr(obj, fld.attr_name, _absent_block_value(fld, getattr(obj, fld.attr_name)))
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConvertError(str(exc)) from None
    return obj


def decode_value(value: Any, typ: Any, pos: Pos = NO_POS) -> Any:
    """One value as ``typ``; a mismatch is a DiagnosticsError at ``pos``."""
    try:
        return convert(value, typ)
    except ConvertError as exc:
        raise DiagnosticsError([Diagnostic(pos, str(exc))]) from None


def encode(obj: Any) -> Any:
    """A decoded schema instance back into plain values keyed by Alloy names, for the API.

    Durations become Go-style strings (``1m30s``); secrets stay :class:`Secret`
    so the caller can redact them; capsules pass through.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        try:
            info = schema_of(type(obj))
        except TypeError:
            return obj
        out = {f.name: encode(getattr(obj, f.attr_name)) for f in info.fields}
        if info.label is not None:
            out = {"label": getattr(obj, info.label.attr_name), **out}
        return out
    if isinstance(obj, Duration):
        return str(obj)
    if isinstance(obj, Secret):
        return obj
    if isinstance(obj, list | tuple):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        return {k: encode(x) for k, x in obj.items()}
    return obj


__all__ = [
    "FieldSpec",
    "attr",
    "block",
    "decode_block",
    "decode_body",
    "decode_value",
    "encode",
    "label",
    "object_to_dataclass",
    "schema_of",
    "type_name",
]
