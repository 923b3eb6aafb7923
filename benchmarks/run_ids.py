"""How long the run-id / validation pass of a default `benchmark` takes (issue 18): every job's model
resolved from files (weights sha256, Tracr cache entry), method parameters validated, id hashed.
Nothing is built. Prints seconds for the first pass (file hashes computed) and a second (memoised).

    python benchmarks/run_ids.py
"""

from __future__ import annotations

import os
import time

from benchmark.defaults import default_cases, sweep_params
from benchmark.runner import Job, validate_jobs


def main() -> None:
    t0 = time.perf_counter()
    cases = default_cases()
    t1 = time.perf_counter()
    jobs = [Job(case=c, method=m, params=sweep_params(m)) for c in cases for m in ("eap", "eap-ig", "acdc", "sp")]
    for label in ("first pass", "second pass"):
        t = time.perf_counter()
        validate_jobs(jobs)
        ids = {j.run_id for j in jobs}
        print(f"{label}: {len(jobs)} jobs over {len(cases)} cases, {len(ids)} distinct ids, "
              f"{time.perf_counter() - t:.2f}s")
    print(f"(listing the cases: {t1 - t0:.2f}s; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
