"""Cache-load time (and optionally cold compile time) of every Tracr case in the registry.

    OMP_NUM_THREADS=1 python benchmarks/tracr_registry.py                 # load all from the shipped cache
    OMP_NUM_THREADS=1 python benchmarks/tracr_registry.py --compile 3 4   # cold compiles into a temp cache

Prints one line per case and a summary (total, max, cache size on disk). The transformer_lens import
is paid once before timing starts and reported apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile", nargs="*", default=None, help="cold-compile these case ids (none given: all)")
    args = p.parse_args(argv)
    t = time.perf_counter()
    import torch
    import transformer_lens  # noqa: F401
    torch.set_num_threads(1)
    print(f"import torch + transformer_lens: {time.perf_counter() - t:.2f}s")
    from cases import case_ids, get_case
    from cases.tracr.cache import default_cache_dir

    ids = case_ids("tracr")
    if args.compile is not None:
        ids = args.compile or ids
        tmp = tempfile.mkdtemp(prefix="tracr-cache-")
        os.environ["CIRCUIT_BENCH_CACHE"] = tmp
        print(f"cold compiles into {tmp}")
    warnings.simplefilter("ignore")
    times = {}
    for cid in ids:
        case = get_case(cid)
        t = time.perf_counter()
        compiled = case.compiled_model()
        times[cid] = time.perf_counter() - t
        cfg = compiled.model.cfg
        print(f"case {cid:>4}: {times[cid]:7.3f}s  (L={cfg.n_layers} H={cfg.n_heads} d_model={cfg.d_model} d_mlp={cfg.d_mlp})")
    total, worst = sum(times.values()), max(times, key=times.get)
    cache = Path(os.environ.get("CIRCUIT_BENCH_CACHE") or default_cache_dir())
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    print(f"{'compiled' if args.compile is not None else 'loaded'} {len(times)} cases in {total:.2f}s "
          f"(mean {total / len(times):.3f}s, max {times[worst]:.3f}s for case {worst}); cache {size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
