"""The standard library: the identifiers every expression can use unless the scope shadows them.

Names and behaviour are Alloy's (``syntax/internal/stdlib``): namespaced
functions (``string.format``, ``encoding.from_json``, ...) and the older flat
names Alloy still accepts (``format``, ``json_decode``, ``env``, ...), which
are the same functions. Arguments are converted as Alloy converts them (a
number passed where a string is expected becomes its text; a secret is never
silently turned into a string), and a bad argument is reported at that
argument.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import platform
import posixpath
import socket
import sys
from functools import cache
from importlib.metadata import version
from typing import Any

from agent.syntax.gofmt import sprintf
from agent.syntax.value import CallError, Function, Secret, type_name, values_equal

# ---- sys, constants --------------------------------------------------------


def _env(name: str) -> str:
    return os.environ.get(name, "")


_GOOS = {
    "linux": "linux",
    "darwin": "darwin",
    "win32": "windows",
    "cygwin": "windows",
    "freebsd": "freebsd",
}
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def _goos() -> str:
    for prefix, name in _GOOS.items():
        if sys.platform.startswith(prefix):
            return name
    return sys.platform


def _version() -> str:
    try:
        return "v" + version("shoal")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "v0.0.0"


def _constants() -> dict[str, str]:
    machine = platform.machine().lower()
    return {
        "hostname": socket.gethostname(),
        "os": _goos(),
        "arch": _GOARCH.get(machine, machine),
        "version": _version(),
    }


# ---- strings ---------------------------------------------------------------

# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip() also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _format(spec: str, *args: Any) -> str:
    return sprintf(spec, list(args))


def _join(items: list[str], sep: str) -> str:
    return sep.join(items)


def _split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)
    return s.split(sep)


def _replace(s: str, old: str, new: str) -> str:
    return s.replace(old, new)


def _trim(s: str, cutset: str) -> str:
    return s.strip(cutset) if cutset else s


def _trim_prefix(s: str, prefix: str) -> str:
    return s[len(prefix) :] if prefix and s.startswith(prefix) else s


def _trim_suffix(s: str, suffix: str) -> str:
    return s[: -len(suffix)] if suffix and s.endswith(suffix) else s


def _trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


# ---- encoding --------------------------------------------------------------


def _json_number(text: str) -> float:
    return float(text)


def _from_json(text: str) -> Any:
    # Go decodes every JSON number into float64 when the target is interface{}.
    try:
        return json.loads(text, parse_int=_json_number)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CallError(f"invalid JSON: {exc}", 0) from None


@cache
def _go_yaml_loader() -> type:
    """YAML as Go's yaml.v3 reads it into interface{}: only true/false are bools; timestamps stay strings.

    PyYAML is imported here, on the first ``encoding.from_yaml`` call, not with this module:
    every configuration is evaluated with the standard library, few call it, and PyYAML is
    ~1.5 MB of every ``shoal run`` (not a cycle: a fixed cost nobody needs).
    """
    import yaml

    class GoYAMLLoader(yaml.SafeLoader):
        pass

    GoYAMLLoader.yaml_implicit_resolvers = {
        first: [
            (tag, rx)
            for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    GoYAMLLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return GoYAMLLoader


def _yaml_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else _yaml_key(k)): _yaml_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_yaml_value(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _yaml_key(k: Any) -> str:
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    return str(k)


def _from_yaml(text: str) -> Any:
    loader = _go_yaml_loader()
    import yaml  # already imported by _go_yaml_loader: see there why not at the top

    try:
        for doc in yaml.load_all(text, Loader=loader):  # noqa: S506 - a SafeLoader subclass
            return _yaml_value(doc)
        return None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise CallError(f"invalid YAML: {exc}", 0) from None


def _b64decode(text: str, altchars: bytes | None) -> str:
    cleaned = text.replace("\r", "").replace("\n", "")
    try:
        raw = base64.b64decode(cleaned.encode("ascii"), altchars=altchars, validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CallError(f"illegal base64 data: {exc}", 0) from None
    return raw.decode("utf-8", "replace")


def _from_base64(text: str) -> str:
    return _b64decode(text, None)


def _from_urlbase64(text: str) -> str:
    return _b64decode(text, b"-_")


def _to_base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _to_urlbase64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


# ---- arrays, objects, misc -------------------------------------------------


def _concat(*arrays: Any) -> list[Any]:
    out: list[Any] = []
    for i, a in enumerate(arrays):
        if type_name(a) != "array":
            raise CallError(f"invalid argument {i + 1}: expected array, got {type_name(a)}", i)
        out.extend(a)
    return out


def _combine_maps(*args: Any) -> list[dict[str, Any]]:
    if len(args) not in (3, 4):
        raise CallError(f"expected 3 or 4 arguments, got {len(args)}")
    left, right, keys = args[:3]
    passthrough = args[3] if len(args) == 4 else False
    for i, arr in enumerate((left, right)):
        if type_name(arr) != "array":
            raise CallError(f"invalid argument {i + 1}: expected array, got {type_name(arr)}", i)
        for j, m in enumerate(arr):
            if type_name(m) != "object":
                raise CallError(
                    f"invalid argument {i + 1}: [{j}]: expected object, got {type_name(m)}", i
                )
    if type_name(keys) != "array":
        raise CallError(f"invalid argument 3: expected array, got {type_name(keys)}", 2)
    if not keys:
        raise CallError("merge conditions must not be empty", 2)
    for j, k in enumerate(keys):
        if type(k) is not str:
            raise CallError(f"invalid argument 3: [{j}]: expected string, got {type_name(k)}", 2)
    if type(passthrough) is not bool:
        raise CallError(f"invalid argument 4: expected bool, got {type_name(passthrough)}", 3)
    out: list[dict[str, Any]] = []
    for lm in left:
        matched = False
        for rm in right:
            if all(k in lm and k in rm and values_equal(lm[k], rm[k]) for k in keys):
                out.append({**lm, **rm})
                matched = True
        if passthrough and not matched:
            out.append(dict(lm))
    return out


def _is_empty(v: Any) -> bool:
    t = type_name(v)
    if t == "null":
        return True
    if t in ("array", "object", "string", "secret"):
        return len(v) == 0
    if t in ("number", "bool"):
        return not v
    return False


def _coalesce(*args: Any) -> Any:
    for a in args:
        if not _is_empty(a):
            return a
    return args[-1] if args else None


def _nonsensitive(s: Secret) -> str:
    return s.reveal()


def _path_join(*parts: str) -> str:
    # Go's filepath.Join: joins non-empty elements and cleans the result.
    joined = "/".join(p for p in parts if p)
    return posixpath.normpath(joined) if joined else ""


# ---- the table -------------------------------------------------------------


def _fn(name: str, impl: Any, params: list[Any], variadic: bool = False) -> Function:
    return Function(name, impl, params, variadic)


_STRING = {
    "format": _fn("string.format", _format, [str, Any], variadic=True),
    "join": _fn("string.join", _join, [list[str], str]),
    "split": _fn("string.split", _split, [str, str]),
    "replace": _fn("string.replace", _replace, [str, str, str]),
    "to_lower": _fn("string.to_lower", str.lower, [str]),
    "to_upper": _fn("string.to_upper", str.upper, [str]),
    "trim": _fn("string.trim", _trim, [str, str]),
    "trim_prefix": _fn("string.trim_prefix", _trim_prefix, [str, str]),
    "trim_suffix": _fn("string.trim_suffix", _trim_suffix, [str, str]),
    "trim_space": _fn("string.trim_space", _trim_space, [str]),
}

_ENCODING = {
    "from_json": _fn("encoding.from_json", _from_json, [str]),
    "from_yaml": _fn("encoding.from_yaml", _from_yaml, [str]),
    "from_base64": _fn("encoding.from_base64", _from_base64, [str]),
    "from_URLbase64": _fn("encoding.from_URLbase64", _from_urlbase64, [str]),
    "to_base64": _fn("encoding.to_base64", _to_base64, [str]),
    "to_URLbase64": _fn("encoding.to_URLbase64", _to_urlbase64, [str]),
}

_ARRAY = {
    "concat": _fn("array.concat", _concat, [Any], variadic=True),
    "combine_maps": _fn("array.combine_maps", _combine_maps, [Any], variadic=True),
}

_CONVERT = {"nonsensitive": _fn("convert.nonsensitive", _nonsensitive, [Secret])}
_SYS = {"env": _fn("sys.env", _env, [str])}
_COALESCE = _fn("coalesce", _coalesce, [Any], variadic=True)

# Pre-namespace names, still accepted by Alloy (deprecated there).
DEPRECATED: dict[str, Any] = {
    "env": _SYS["env"],
    "nonsensitive": _CONVERT["nonsensitive"],
    "concat": _ARRAY["concat"],
    "json_decode": _ENCODING["from_json"],
    "yaml_decode": _ENCODING["from_yaml"],
    "base64_decode": _ENCODING["from_base64"],
    "format": _STRING["format"],
    "join": _STRING["join"],
    "replace": _STRING["replace"],
    "split": _STRING["split"],
    "to_lower": _STRING["to_lower"],
    "to_upper": _STRING["to_upper"],
    "trim": _STRING["trim"],
    "trim_prefix": _STRING["trim_prefix"],
    "trim_suffix": _STRING["trim_suffix"],
    "trim_space": _STRING["trim_space"],
}

STDLIB: dict[str, Any] = {
    "constants": _constants(),
    "coalesce": _COALESCE,
    "sys": _SYS,
    "convert": _CONVERT,
    "array": _ARRAY,
    "encoding": _ENCODING,
    "string": _STRING,
    "file": {"path_join": _fn("file.path_join", _path_join, [str], variadic=True)},
    **DEPRECATED,
}
