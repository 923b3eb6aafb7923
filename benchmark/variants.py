"""Method variants: which runs of a result set measure the same method with the same settings.

A *variant* is (model, method, the method's resolved hyper-parameters, ablation, metric), the model being
its kind, with a weights prefix for a model the user trained or named by directory. Two things
are not part of it: the data (seed, number of examples: runs of one variant on other seeds are repeated
measurements of one thing) and the parameters that change only speed or memory (the method class's
``speed_only``). The
leaderboard has one row per variant and the plots one curve per variant, so node SP and edge SP, or
EAP-IG with other steps, are never averaged into one number or drawn as one line.

A variant's label is the method's name, followed, when the result set holds several variants of that
method, by the parameters whose values differ between them, in the short form the method class gives
(``Method.variant_parts``: ``sp (node)``, ``sp (edge, 10 lambdas)``, ``eap-ig (inputs, 5 steps)``,
``acdc (21 tau)``, ``acdc (tau=0.01)``) and as ``key=value`` otherwise.

What a method knows about its variants is read from its class only for built-in and registered names: a
method named in a result file is never imported for it (any other name gets the generic treatment).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from core.protocols import label_number as _num
from core.results import RunResult, dumps
from methods import _BUILTIN, REGISTRY, get_method, method_class

# the result's ``data`` settings that are part of a variant (seed and n are data, not the method)
SETTINGS = ("ablation", "metric")
_SETTING_PREFIX = "@"
_DEFAULT_SETTINGS = {"ablation": "corrupted", "metric": "faithfulness"}


def as_result(doc: Mapping[str, Any] | RunResult) -> RunResult:
    """A result document (or a reference record) as a :class:`~core.results.RunResult`."""
    return doc if isinstance(doc, RunResult) else RunResult.from_json(doc)


def _resolved_params(doc: Mapping[str, Any] | RunResult) -> dict[str, Any]:
    """The method's parameters with defaults filled in. An ``ok`` result records them resolved; a failed
    run may record only what was typed, so a built-in method's constructor fills in the defaults (when
    it accepts the values; otherwise the typed values are the variant)."""
    r = as_result(doc)
    params = dict(r.params)
    if r.ok:
        return params
    try:
        if str(r.method) in _BUILTIN:  # never import a module named in a result file
            return dict(get_method(str(r.method), **params).params())
    except Exception:  # noqa: BLE001 -- bad values (the reason the run failed) stay as typed
        pass
    return params


def _known_class(method: str) -> type | None:
    """The class of a built-in or registered method; None for any other name (never imported: it comes from
    a result file) and for a class that does not load."""
    if method not in _BUILTIN and method not in REGISTRY:
        return None
    try:
        return method_class(method)
    except Exception:  # noqa: BLE001 -- an unloadable method gets the generic treatment
        return None


def speed_only(method: str) -> tuple[str, ...]:
    """The parameters of ``method`` that change speed or memory only (its class's ``speed_only``)."""
    return tuple(getattr(_known_class(method), "speed_only", ()))


def variant_of(doc: Mapping[str, Any] | RunResult) -> dict[str, Any]:
    """The parameters that define ``doc``'s variant: resolved method parameters without the speed-only
    ones, and the ablation and metric (as ``@ablation``, ``@metric``)."""
    r = as_result(doc)
    drop = set(speed_only(str(r.method)))
    out = {k: v for k, v in _resolved_params(r).items() if k not in drop}
    for key in SETTINGS:
        value = getattr(r.data, key)
        out[_SETTING_PREFIX + key] = _DEFAULT_SETTINGS[key] if value is None else value
    return out


def _canon(params: Mapping[str, Any]) -> str:
    return json.dumps(json.loads(dumps(dict(params), indent=None)), sort_keys=True, separators=(",", ":"))


def variant_key(doc: Mapping[str, Any] | RunResult) -> tuple[str, str, str]:
    """(model label, method, canonical JSON of the variant's parameters)."""
    r = as_result(doc)
    return r.model_label, str(r.method), _canon(variant_of(r))


# ---- labels ---------------------------------------------------------------------------------------------
def _value(x: Any, full: bool = False) -> str:
    if isinstance(x, list):
        if full or len(x) <= 3:
            return "[" + ",".join(_num(v) for v in x) + "]"
        return f"[{_num(x[0])}..{_num(x[-1])}] ({len(x)})"
    return _num(x)


def _human_parts(method: str, differing: set[str], p: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    """Short label parts: the method class's (``variant_parts``), then the settings': (parts, keys they cover)."""
    own = getattr(_known_class(method), "variant_parts", None)
    parts, done = own(differing, p) if own is not None else ([], set())
    parts, done = list(parts), set(done)
    for key in SETTINGS:
        k = _SETTING_PREFIX + key
        if k in differing and k in p:
            parts.append(f"{p[k]} ablation" if key == "ablation" else f"metric {p[k]}")
        done.add(k)
    return [x for x in parts if x], done


def _plain_parts(differing: set[str], p: Mapping[str, Any], full: bool = False) -> list[str]:
    return [f"{k.lstrip(_SETTING_PREFIX)}={_value(p[k], full)}" for k in sorted(differing) if k in p]


def _label(method: str, parts: list[str]) -> str:
    return f"{method} ({', '.join(parts)})" if parts else method


def _differing(found: Iterable[Mapping[str, Any]], missing_differs: bool) -> set[str]:
    """Keys whose values differ between the variants: among those that have the key, or (when
    ``missing_differs``) also counting a missing key as a value of its own."""
    found = list(found)
    out = set()
    for k in set().union(*found):
        vals = {json.dumps(p[k], sort_keys=True) if k in p else "\0missing" for p in found
                if k in p or missing_differs}
        if len(vals) > 1:
            out.add(k)
    return out


def label_variants(variants: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """A readable label for each variant key (see the module doc). Labels of different variants of one
    method never coincide: a clash falls back to every differing ``key=value`` in full, then to a hash."""
    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    keys = list(dict.fromkeys(variants))
    for _, method, canon in keys:
        by_method.setdefault(method, {})[canon] = json.loads(canon)
    labels_of: dict[tuple[str, str], str] = {}
    for method, found in by_method.items():
        if len(found) == 1:
            labels_of[(method, next(iter(found)))] = method
            continue
        differing = _differing(found.values(), missing_differs=False)
        names: dict[str, str] = {}
        for canon, p in found.items():
            parts, done = _human_parts(method, differing, p)
            names[canon] = _label(method, parts + _plain_parts(differing - done, p))
        for level in ("plain", "hash"):
            clash = {c for c in names if sum(names[c] == n for n in names.values()) > 1}
            if not clash:
                break
            loose = _differing([found[c] for c in clash], missing_differs=True)
            for c in clash:
                p = found[c]
                parts, _ = _human_parts(method, differing, p)
                names[c] = (_label(method, parts + _plain_parts(loose, p, full=True)) if level == "plain" else
                            f"{names[c]} #{hashlib.sha256(c.encode()).hexdigest()[:6]}")
        labels_of.update({(method, c): n for c, n in names.items()})
    return {k: labels_of[(k[1], k[2])] for k in keys}


def describe(params: Mapping[str, Any]) -> str:
    """A compact ``key=value; ...`` form of a result's parameters (for the per-run table)."""
    return "; ".join(f"{k}={_value(v)}" for k, v in sorted(params.items()))


# ---- curve labels -------------------------------------------------------------------------------------------
def run_labels(docs: Iterable[tuple[Path | str, Mapping[str, Any]]]) -> dict[str, str]:
    """``{str(path): label}`` for plots and tables of result documents: the variant label (named over all
    of ``docs``), and, where two finished runs of one variant share a (case, model), what tells them apart
    (the model's weights, its training seed, the data seed, n, or the run id)."""
    docs = [(path, as_result(doc)) for path, doc in docs]
    keys = {str(path): variant_key(doc) for path, doc in docs}
    names = label_variants(keys.values())
    out = {p: names[k] for p, k in keys.items()}
    groups: dict[tuple[str, str, str], list[tuple[str, RunResult]]] = {}
    for path, doc in docs:
        if not doc.ok:  # only finished runs are drawn or tabled side by side
            continue
        groups.setdefault((str(doc.case), str(doc.model), out[str(path)]), []).append((str(path), doc))
    for (_, _, label), items in groups.items():
        if len(items) < 2:
            continue
        for field in ("model", "model_seed", "seed", "n", "run_id"):
            vals = [_data(doc, field) for _, doc in items]
            if len(set(map(str, vals))) == len(vals):
                for (path, _), v in zip(items, vals):
                    out[path] = f"{label} [{field}={v}]"
                break
        else:
            for i, (path, _) in enumerate(items):
                out[path] = f"{label} [#{i + 1}]"
    return out


def _data(r: RunResult, field: str) -> Any:
    if field == "model":
        return r.model_label
    if field in ("run_id", "model_seed"):
        return getattr(r, field)
    value = getattr(r.data, field)  # seed, n: the data's, else the result's own
    return getattr(r, field, None) if value is None else value
