"""Time and peak memory of EAP, EAP-IG and exact patching on a GPT-2-small-shaped model, on CPU,
loaded as a *file case* from a local Hugging Face checkpoint (issue 24).

    OMP_NUM_THREADS=1 python benchmarks/gpt2_small_file_case.py [--work /tmp/cb-gpt2-small] [--n 8] [--seq 16]
        [--methods eap eap-ig exact] [--exact-edges 64]

1. builds ``GPT2LMHeadModel(GPT2Config(n_ctx=1024))`` (12 layers x 12 heads, d_model 768, vocab 50257) with seeded
   random weights and saves it with ``save_pretrained`` (safetensors) under ``--work``;
2. writes ``data.jsonl`` (``--n`` rows of ``--seq`` random token ids, clean and corrupted, a random
   answer and wrong answer each) and ``case.toml`` (``metric = "logit-diff"``);
3. loads it through ``cases.get_case`` (the file-case loader: TransformerLens' own conversion, offline)
   and checks that the graph has 32 491 edges (MIB's count for GPT-2 small);
4. runs each method in its own child process (so peak RSS is per method: ``os.wait4``'s
   ``ru_maxrss``): setup (model load, data, patching engine with clean and corrupted activations) and
   the method, timed separately.

Exact patching over all 32 491 edges is one ablated forward pass (from the receiver's block) per edge:
with ``--exact-edges K`` it scores K edges spread evenly over the edge list (every layer's share) on
the same engine and code path as ``ExactPatching`` and extrapolates the method time linearly to all
edges (said in the output); ``--exact-edges 0`` runs the full method.
Prints one JSON line per method and a Markdown table. Measured, never asserted on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

from benchmark.runner import Job, build_problem  # noqa: E402  (after the environment set-up)
from cases import get_case  # noqa: E402
from core.graph import Graph  # noqa: E402
from core.metrics import attribution_loss  # noqa: E402
from methods import get_method  # noqa: E402
from methods.attribution import ExactPatching  # noqa: E402

MIB_GPT2_EDGES = 32_491


def build(work: Path, n: int, seq: int, seed: int = 0) -> Path:
    """The checkpoint, data and case.toml (kept between runs: rebuilt only when missing)."""
    import torch

    ckpt = work / "gpt2-small-random"
    if not (ckpt / "model.safetensors").is_file():
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(n_ctx=1024)).save_pretrained(ckpt, safe_serialization=True)
    g = torch.Generator().manual_seed(seed)
    V = 50257
    lines = []
    for _ in range(n):
        clean = torch.randint(0, V, (seq,), generator=g).tolist()
        corrupted = torch.randint(0, V, (seq,), generator=g).tolist()
        answer, wrong = torch.randint(0, V, (2,), generator=g).tolist()
        lines.append(json.dumps({"clean": clean, "corrupted": corrupted, "answer": answer, "wrong": wrong}))
    (work / "data.jsonl").write_text("\n".join(lines) + "\n")
    toml = work / "case.toml"
    toml.write_text('name = "gpt2-small-random"\nmetric = "logit-diff"\n[model]\nhf_checkpoint = "gpt2-small-random"\n'
                    '[data]\npath = "data.jsonl"\n')
    return toml


def child(toml: str, method: str, n: int, exact_edges: int) -> dict:
    """One method in this process: setup and method timed apart."""
    import torch

    torch.set_num_threads(1)

    t0 = time.perf_counter()
    case = get_case(toml)
    job = Job(case=case.id, method=method, n=n, metric=case.default_metric)
    problem = build_problem(job, case, case.resolve_model(None))
    engine = problem.engine()
    t_setup = time.perf_counter() - t0
    E = problem.graph.n_edges
    out = {"method": method, "n_edges": E, "n_rows": len(problem.data), "seq": problem.data.clean.shape[1],
           "metric": problem.metric, "setup_seconds": t_setup}
    t1 = time.perf_counter()
    if method == "exact" and exact_edges:

        m = ExactPatching()
        with torch.no_grad(), engine.eval_mode():
            loss = attribution_loss(problem, m.attribution_metric)
            chunk = engine.chunk_size()
            base = float(engine.evaluate(engine.full_mask(), loss.fn)[0])
            step = max(1, E // exact_edges)
            sample = list(range(0, E, step))[:exact_edges]
            m._effects(engine, loss.fn, [torch.tensor([e]) for e in sample], chunk)
        t = time.perf_counter() - t1
        out.update(params=m.params(), measured_edges=len(sample), measured_seconds=t, chunk=chunk,
                   method_seconds=t * E / len(sample), extrapolated=True, loss_full_model=base,
                   note=f"{len(sample)} edges (every {step}th) measured, time scaled by {E}/{len(sample)}; "
                        "node scores (one run per node) not included")
    else:
        m = get_method(method)
        output = m.discover(problem)
        out.update(params=m.params(), method_seconds=time.perf_counter() - t1, extrapolated=False,
                   attribution_metric=output.info.get("attribution_metric"),
                   n_scores=len(output.edge_scores or {}))
    return out


def run_child(toml: Path, method: str, n: int, exact_edges: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--toml", str(toml), "--n", str(n),
           "--exact-edges", str(exact_edges)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        return {"method": method, "error": f"exit {p.returncode}"}
    doc = json.loads(out.strip().splitlines()[-1])
    doc["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/cb-gpt2-small")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--methods", nargs="+", default=["eap", "eap-ig", "exact"])
    ap.add_argument("--exact-edges", type=int, default=64)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--toml", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.toml, args.child, args.n, args.exact_edges)))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    toml = build(work, args.n, args.seq)
    build_s = time.perf_counter() - t

    t = time.perf_counter()
    case = get_case(str(toml))
    g = case.graph()
    print(json.dumps({"build_seconds": build_s, "case_validation_seconds": time.perf_counter() - t,
                      "graph_edges": g.n_edges, "closed_form": Graph.expected_edge_count(12, 12),
                      "matches_mib": g.n_edges == MIB_GPT2_EDGES}), flush=True)
    rows = []
    for m in args.methods:
        doc = run_child(toml, m, args.n, args.exact_edges)
        rows.append(doc)
        print(json.dumps(doc), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("| method | edges | rows x seq | setup s | method s | peak RSS MiB | note |\n|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | | | | | | {r['error']} |")
            continue
        note = r.get("note", "") if r.get("extrapolated") else "full run"
        print(f"| {r['method']} | {r['n_edges']} | {r['n_rows']} x {r['seq']} | {r['setup_seconds']:.1f} | "
              f"{r['method_seconds']:.1f}{' (extrapolated)' if r.get('extrapolated') else ''} | "
              f"{r['peak_rss_mib']:.0f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
