"""Method flags, derived from each method's constructor (hyper-parameters as constructor arguments).

``run METHOD --flag ...`` parses a method's flags with :func:`method_parser` (one ``--flag`` per
constructor argument, typed from its default and annotation), ``run METHOD --help`` prints
:func:`method_help`; :func:`check_jobs` and :func:`case_metric` validate a run before any work.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import re
from typing import Any, Sequence

from benchmark.console import Parser, UsageError, _hint, _option_strings, finite_float, user_input
from benchmark.runner import validate_jobs
from core.registry import UnknownNameError
from methods import method_class, method_names


def _annotation_kind(param: inspect.Parameter) -> tuple[type, bool]:
    """(element type, is_list) from a parameter's default and (string) annotation."""
    ann = str(param.annotation) if param.annotation is not inspect.Parameter.empty else ""
    default = param.default
    is_list = any(k in ann for k in ("list", "tuple", "Sequence")) or isinstance(default, (list, tuple))
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if name in ann.replace("list", "").replace("Sequence", ""):
            return typ, is_list
    if default is None or default is inspect.Parameter.empty:
        return str, is_list
    if isinstance(default, (list, tuple)):
        return (type(default[0]) if default else float), True
    return type(default), is_list


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def method_parser(method_name: str, cls) -> Parser:
    p = Parser(prog=f"circuit-bench run {method_name}", add_help=False)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name == "truth":
            continue
        typ, is_list = _annotation_kind(param)
        typ = finite_float if typ is float else typ  # thresholds, lambdas, ...: finite at parse time
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        default = argparse.SUPPRESS  # only flags the user gave are passed; the method keeps its defaults
        if typ is bool and not is_list:  # --flag, --flag true|false, --no-flag
            p.add_argument(*flags, dest=name, nargs="?", const=True, type=_parse_bool, default=default)
            p.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false", default=default)
        elif is_list:
            p.add_argument(*flags, dest=name, type=typ, nargs="+", default=default)
        else:
            p.add_argument(*flags, dest=name, type=typ, default=default)
    return p


def method_help(method_name: str, cls) -> str:
    """``run METHOD --help``: the method's own flags with their defaults, and its default sweep."""
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    lines = [f"method {method_name} ({cls.__module__}:{cls.__qualname__}): {doc}".rstrip(), "", "method flags:"]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name == "truth":
            continue
        typ, is_list = _annotation_kind(param)
        flag = f"--{name.replace('_', '-')}"
        if typ is bool and not is_list:
            flag += f" / --no-{name.replace('_', '-')}"
        else:
            flag += f" {typ.__name__.upper()}{' ...' if is_list else ''}"
        default = "required" if param.default is inspect.Parameter.empty else f"default {param.default!r}"
        lines.append(f"  {flag:<42} {default}")
    sweep = cls.default_sweep() if hasattr(cls, "default_sweep") else {}
    if sweep:
        lines += ["", "default sweep (used by both `run` and `benchmark` unless you give the parameter or "
                      + ", ".join(f"--{v.replace('_', '-')}" for v in cls.sweep_single.values()) + "):"]
        for k, v in sweep.items():
            vals = ", ".join(f"{x:g}" for x in v) if isinstance(v, list) else repr(v)
            lines.append(f"  {k} ({len(v) if isinstance(v, list) else 1} values): {vals}")
    else:
        lines += ["", "default sweep: none (one run with the defaults above)"]
    return "\n".join(lines) + "\n"


def check_jobs(jobs) -> None:
    """Validate before work: resolve every job's model and method parameters (ValueError / TypeError /
    FileNotFoundError from a constructor or a model directory become one-line usage errors, exit 2)."""
    with user_input():
        validate_jobs(jobs)


def parse_method_flags(method_name: str, extra: Sequence[str]) -> tuple[str, dict[str, Any]]:
    # InterpBench spelling: ``run eap --integrated-grad-steps=N`` is EAP-IG.
    if method_name == "eap" and any(a.split("=")[0] in ("--integrated-grad-steps", "--integrated_grad_steps")
                                    for a in extra):
        method_name = "eap-ig"
    cls = method_class(method_name)
    ns, rest = method_parser(method_name, cls).parse_known_args(list(extra))
    if rest:
        p = method_parser(method_name, cls)
        hint = _hint(p, "unrecognized arguments: " + " ".join(rest)) or _other_methods_hint(method_name, rest)
        raise UsageError(f"unrecognized arguments for method {method_name}: {' '.join(rest)}{hint}")
    return method_name, vars(ns)


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME[k=v,...]`` -> (name, params); a bad spec or unknown name raises ValueError.
    The one spelling of a method variant on a command line where several methods are listed
    (``benchmark --methods``, ``eval pareto --methods``): values are Python literals (``0.1``,
    ``True``) or else strings (``ig_variant=activations``); ``-`` in a key is ``_``."""
    m = re.fullmatch(r"\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*", spec)
    if not m:
        raise ValueError(f"bad method spec {spec!r}; expected NAME or NAME[key=value,...]")
    name, body = m.group(1), m.group(2)
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in (body or "").split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise ValueError(f"bad method parameter {item!r} in {spec!r}; expected key=value")
        try:
            params[key.strip().replace("-", "_")] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            params[key.strip().replace("-", "_")] = val.strip()
    try:
        method_class(name)
    except UnknownNameError as err:
        raise ValueError(str(err)) from None
    return name, params


def _other_methods_hint(method_name: str, rest: Sequence[str]) -> str:
    """A flag that belongs to another built-in method: say which."""
    words = [w.split("=")[0] for w in rest if w.startswith("--")]
    for other in method_names("circuit"):  # a circuit run: hint circuit methods only
        if other == method_name:
            continue
        try:
            known = [o for o in _option_strings(method_parser(other, method_class(other))) if "_" not in o]
        except Exception:  # noqa: BLE001 -- a broken plug-in must not hide the real error
            continue
        close = [m for w in words for m in difflib.get_close_matches(w, known, n=1, cutoff=0.8)]
        if close:
            return f" ({close[0]} is a flag of {other})"
    return ""


def case_metric(case, metric: str | None) -> str:
    """The canonical metric of a run (``--metric`` or the case's default), or a usage error before any work."""
    try:
        return case.check_metric(metric)
    except ValueError as err:
        raise UsageError(f"--metric: {err}") from None
