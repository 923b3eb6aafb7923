"""Compile time and cache-load time of Tracr programs (standalone; prints a table).

    OMP_NUM_THREADS=1 python benchmarks/tracr_compile.py [--repeat 3] [--only length,reverse]

Programs: the library-style example programs of ``cases.tracr.examples`` (those the bridge tests
use). Each is compiled without the cache (tracr + conversion + ground truth + defects), then
stored into a temporary cache and loaded back through ``compile_rasp_to_model`` (a cache hit).
The first compile also pays for importing JAX and tracr's compiler; that is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

from cases.tracr.examples import CASES  # noqa: E402  (after the path set-up)


def load_programs() -> dict:
    return CASES


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions per program (median reported)")
    ap.add_argument("--only", default="", help="comma-separated program ids")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    cases = load_programs()
    if args.only:
        unknown = set(args.only.split(",")) - set(cases)
        if unknown:
            ap.error(f"unknown programs {sorted(unknown)}; known: {sorted(cases)}")
        cases = {k: cases[k] for k in args.only.split(",")}

    t0 = time.perf_counter()
    import jax  # noqa: F401
    import tracr.compiler.compiling  # noqa: F401

    from cases.tracr import compile_rasp_to_model
    import_s = time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (builder, vocab, n, causal) in cases.items():
            compile_s, load_s = [], []
            for _ in range(args.repeat):
                program = builder()
                t = time.perf_counter()
                compiled = compile_rasp_to_model(program, vocab, n, causal=causal, cache=False)
                compile_s.append(time.perf_counter() - t)
            compile_rasp_to_model(builder(), vocab, n, causal=causal, cache_dir=tmp)  # store
            for _ in range(args.repeat):
                t = time.perf_counter()
                hit = compile_rasp_to_model(builder(), vocab, n, causal=causal, cache_dir=tmp)
                load_s.append(time.perf_counter() - t)
            c = compiled.model.cfg
            rows.append((name, f"{c.n_layers}/{c.n_heads}/{c.d_head}/{c.d_mlp}/{c.d_model}",
                         statistics.median(compile_s), statistics.median(load_s),
                         dir_size(Path(tmp) / hit.key), ",".join(d.code for d in compiled.defects) or "-"))

        # A fresh process that only loads from the cache (no JAX import).
        name, (builder, vocab, n, causal) = next(iter(cases.items()))
        code = ("import sys, time; t = time.perf_counter(); "
                f"sys.path.insert(0, {str(ROOT)!r}); "
                "import warnings; warnings.simplefilter('ignore'); "
                "from cases.tracr.examples import CASES; from cases.tracr import compile_rasp_to_model; "
                f"b, v, n, c = CASES[{name!r}]; compile_rasp_to_model(b(), v, n, causal=c, cache_dir={tmp!r}); "
                "assert 'jax' not in sys.modules; print(time.perf_counter() - t)")
        fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        fresh_s = fresh.stdout.strip() or f"failed: {fresh.stderr[-300:]}"

    print(f"JAX + tracr compiler import: {import_s:.2f} s (paid once per process, only on a cache miss)")
    print(f"fresh process, imports + cache hit for {name!r}: {fresh_s} s (no JAX)")
    print()
    print(f"{'program':<20} {'L/H/dh/dmlp/dmodel':<20} {'compile s':>10} {'cache load s':>13} {'cache KiB':>10}  defects")
    for name, shape, comp, load, size, defects in rows:
        print(f"{name:<20} {shape:<20} {comp:>10.3f} {load:>13.3f} {size / 1024:>10.1f}  {defects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
