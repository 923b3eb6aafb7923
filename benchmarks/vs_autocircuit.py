"""circuit-bench against auto-circuit 1.0.1 on the same random models and data, in one run.

    AC_VENV=$HOME/.cache/ac-venv bash ../shared/anchors/setup-autocircuit.sh     # once, ~2.5 min
    OMP_NUM_THREADS=1 python benchmarks/vs_autocircuit.py [--models 2x4 4x8 6x12] [--rounds 3] [--k 4]
                                                          [--acdc 4x8] [--tau 1e-3] [--no-mem]

Models (LN, GELU, d_mlp = 4 d_model, vocab 64, random init from the seed): 2L x 4H d32 (d_head 8),
4L x 8H d128 (16), 6L x 12H d256 (21); data: 32 random clean/corrupted pairs of 16 tokens (seed),
a random answer and wrong answer per row. Our side builds the models, saves them (safetensors +
config JSON) and the data to a temporary folder; auto-circuit runs in its own venv
(``benchmarks/autocircuit_worker.py``, a persistent subprocess, PYTHONHASHSEED=0) and loads them.
Both sides one torch thread; rounds interleaved (ours, theirs, ours, ...); the best of the rounds.

Rows:
* ``EAP``: ours ``EAP().discover`` on a fresh Problem (so the engine's clean/corrupted runs are
  included); theirs ``mask_gradient_prune_scores`` (logit gradient, avg_diff answers, mask 0, its
  own ablation runs included). Agreement: Pearson of their scores with ours computed through the
  engine with their loss (minus the last position's answer-minus-wrong logit).
* ``forward``: one patched forward over the 32 rows; ours ``engine.run`` on ``--k`` masks at once
  (seconds per mask row), theirs one mask per forward (its API); both with the same random masks
  (half the edges ablated); max |logit difference| between the tools on the first mask.
* ``memory``: peak RSS increase during that forward (after a warm-up forward, with the kernel's peak
  mark reset), per mask row, each tool in a fresh process.
* ``ACDC``: one tau (KL to the clean output over all positions, resample ablation); theirs
  ``acdc_prune_scores``; ours ``ACDC(order="given", edge_order=<their visiting order>)``, so both
  make the same greedy decisions: kept-edge sets compared.
Measured, never asserted on. Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from core.data import CaseData
from core.graph import Graph
from core.patching import PatchEngine
from core.protocols import Problem
from methods.acdc import ACDC
from methods.attribution import EAP

SPECS = {"2x4": (2, 4, 32, 8), "4x8": (4, 8, 128, 16), "6x12": (6, 12, 256, 21)}
N, SEQ, VOCAB = 32, 16, 64


def config(spec: str) -> dict:
    L, H, D, dh = SPECS[spec]
    return dict(n_layers=L, n_heads=H, d_model=D, d_head=dh, d_mlp=4 * D, d_vocab=VOCAB, n_ctx=SEQ,
                act_fn="gelu", normalization_type="LN", seed=0, use_attn_result=True, use_split_qkv_input=True,
                use_hook_mlp_in=True, default_prepend_bos=False)


def build(spec: str, folder: Path, seed: int):
    """Our model, data, graph; and the same saved for auto-circuit."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = config(spec)
    model = HookedTransformer(HookedTransformerConfig(**cfg)).eval()
    g = torch.Generator().manual_seed(seed)
    clean, corr = torch.randint(0, VOCAB, (2, N, SEQ), generator=g)
    ans, wrong = torch.randint(0, VOCAB, (2, N), generator=g)
    zeros = torch.zeros(N, SEQ, dtype=torch.long)
    data = CaseData(clean, corr, zeros, zeros, torch.ones(N, SEQ, dtype=torch.bool), seed)
    params = dict(model.named_parameters())  # weights only: buffers (masks) are rebuilt from the config
    save_file({k: v.detach().contiguous() for k, v in params.items()}, str(folder / f"{spec}.safetensors"))
    (folder / f"{spec}.json").write_text(json.dumps(cfg))
    save_file({"clean": clean, "corrupted": corr, "answers": ans, "wrong": wrong},
              str(folder / f"{spec}.data.safetensors"))
    return model, data, Graph.from_model(model), ans, wrong


def theirs_name(edge: str) -> str:
    """``a0.h1->a1.h0<q>`` -> ``A0.1->A1.0.Q`` (auto-circuit's names)."""
    def node(x: str) -> str:
        if x == "input":
            return "Resid Start"
        if x == "logits":
            return "Resid End"
        if x.startswith("m"):
            return f"MLP {x[1:]}"
        head, _, qkv = x.partition("<")
        layer, h = head[1:].split(".h")
        return f"A{layer}.{h}" + (f".{qkv[0].upper()}" if qkv else "")
    s, r = edge.split("->")
    return f"{node(s)}->{node(r)}"


class Worker:
    def __init__(self, python: str):
        env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": "", "TQDM_DISABLE": "1"}
        self.log = tempfile.TemporaryFile("w+")  # the worker's stderr (auto-circuit's progress bars)
        self.p = subprocess.Popen([python, str(ROOT / "benchmarks" / "autocircuit_worker.py")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)

    def __call__(self, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"auto-circuit worker died on {cmd['cmd']}:\n{self.log.read()[-3000:]}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(out["error"])
        return out

    def close(self) -> None:
        self.p.stdin.write('{"cmd": "quit"}\n')
        self.p.stdin.flush()
        self.p.wait(timeout=60)


def random_masks(graph, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(k, graph.n_edges, generator=g) > 0.5).float()


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def mem_child(spec: str, k: int, seed: int) -> None:
    """(fresh process) our peak RSS increase during engine.run of k masks, KiB, on stdout."""

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model, data, graph, _, _ = build(spec, Path(tmp), seed)
    engine = PatchEngine(model, graph, data, "categorical")
    masks = random_masks(graph, k, seed)
    with torch.no_grad():
        engine.run(masks)  # warm-up (one-time allocations), then the peak of a second run alone
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the system: RSS = live memory
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
        before = rss_kib()
        engine.run(masks)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(peak - before)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", type=int, default=4, help="mask rows per patched forward on our side")
    p.add_argument("--acdc", nargs="*", default=["4x8"], choices=list(SPECS), help="models for the ACDC row")
    p.add_argument("--tau", type=float, default=1e-3)
    p.add_argument("--no-mem", action="store_true", help="skip the memory rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ac-venv", default=os.environ.get("AC_VENV", str(Path.home() / ".cache" / "ac-venv")))
    p.add_argument("--mem-child", nargs=2, metavar=("MODEL", "K"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mem_child:
        mem_child(args.mem_child[0], int(args.mem_child[1]), args.seed)
        return 0
    python = Path(args.ac_venv) / "bin" / "python"
    if not python.exists():
        print(f"error: no auto-circuit venv at {args.ac_venv} (run ../shared/anchors/setup-autocircuit.sh)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    import numpy as np

    load0 = os.getloadavg()
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    worker = Worker(str(python))
    setups = {}
    for spec in args.models:
        model, data, graph, ans, wrong = build(spec, folder, args.seed)
        info = worker(cmd="load", name=spec, dir=str(folder))
        assert info["edges"] == graph.n_edges, (spec, info, graph.n_edges)
        setups[spec] = (model, data, graph, ans, wrong)

    def problem(spec):
        model, data, graph, _, _ = setups[spec]
        return Problem(model, graph, data, "categorical", seed=args.seed, case_id=f"rand{spec}")

    # ---- agreement checks (untimed) ---------------------------------------------------------------
    checks = {}
    for spec, (model, data, graph, ans, wrong) in setups.items():
        engine = PatchEngine(model, graph, data, "categorical")
        masks = random_masks(graph, args.k, args.seed)
        with torch.no_grad():
            ours = engine.run(masks[:1])[0]
        theirs = worker(cmd="forward", name=spec, ablate=[theirs_name(graph.edges[e]) for e in
                                                          (masks[0] == 0).nonzero().flatten().tolist()])
        logit_err = float((ours.flatten() - torch.tensor(theirs["logits"])).abs().max())
        rows_ = torch.arange(N)

        def avg_diff(logits):  # [K, n, pos, vocab] -> [K]: minus the mean answer-minus-wrong logit, last position
            last = logits[:, :, -1]
            return -(last[:, rows_, ans] - last[:, rows_, wrong]).mean(-1)
        signed = engine.edge_scores(engine.ablated_minus_clean(), engine.receiver_gradients(avg_diff))
        their = worker(cmd="eap", name=spec)["scores"]
        t = np.array([their[theirs_name(e)] for e in graph.edges])
        checks[spec] = (logit_err, float(np.corrcoef(signed.numpy(), t)[0, 1]), float(np.abs(signed.numpy() - t).max()))

    # ---- interleaved timings ------------------------------------------------------------------------
    best: dict = {}

    def note(key, sec):
        best[key] = min(best.get(key, float("inf")), sec)
    for r in range(args.rounds):
        for spec, (model, data, graph, _, _) in setups.items():
            prob = problem(spec)
            t = time.perf_counter()
            EAP().discover(prob)
            note(("eap", "ours", spec), time.perf_counter() - t)
            note(("eap", "theirs", spec), worker(cmd="eap", name=spec)["seconds"])
            engine = prob.engine()
            masks = random_masks(graph, args.k, args.seed + r)
            with torch.no_grad():
                t = time.perf_counter()
                engine.run(masks)
                note(("fwd", "ours", spec), (time.perf_counter() - t) / args.k)
            ablate = [theirs_name(graph.edges[e]) for e in (masks[0] == 0).nonzero().flatten().tolist()]
            note(("fwd", "theirs", spec), worker(cmd="forward", name=spec, ablate=ablate)["seconds"])
        print(f"  round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    # ---- ACDC --------------------------------------------------------------------------------------
    acdc = {}
    for spec in args.acdc:
        if spec not in setups:
            continue
        graph = setups[spec][2]
        theirs = worker(cmd="acdc", name=spec, tau=args.tau)
        back = {theirs_name(e): e for e in graph.edges}
        order = [back[e] for e in theirs["order"]]
        prob = problem(spec)
        t = time.perf_counter()
        out = ACDC(threshold=args.tau, order="given", edge_order=order).discover(prob)
        ours_sec = time.perf_counter() - t
        kept_ours = set(out.sweep[0][1].edges)
        kept_theirs = {back[e] for e in theirs["kept"]}
        acdc[spec] = (ours_sec, theirs["seconds"], len(kept_ours), len(kept_theirs), kept_ours == kept_theirs,
                      out.info["trials"], len(order))
        print(f"  ACDC {spec}: ours {ours_sec:.1f} s, theirs {theirs['seconds']:.1f} s", file=sys.stderr, flush=True)
    worker.close()

    # ---- memory (fresh processes) --------------------------------------------------------------------
    mem = {}
    if not args.no_mem:
        for spec in args.models:
            ours = subprocess.run([sys.executable, __file__, "--mem-child", spec, str(args.k), "--seed", str(args.seed)],
                                  capture_output=True, text=True, check=True)
            w = Worker(str(python))
            w(cmd="load", name=spec, dir=str(folder))
            graph = setups[spec][2]
            masks = random_masks(graph, 1, args.seed)
            theirs = w(cmd="forward", name=spec, mem=True, ablate=[
                theirs_name(graph.edges[e]) for e in (masks[0] == 0).nonzero().flatten().tolist()])
            w.close()
            mem[spec] = (int(ours.stdout.split()[-1]) / args.k / 1024, theirs["peak_increase_kib"] / 1024)
    tmp.cleanup()

    # ---- report -------------------------------------------------------------------------------------
    print("| work | model (edges) | circuit-bench | auto-circuit | ratio |")
    print("|---|---|---|---|---|")
    for spec, (_, _, graph, _, _) in setups.items():
        label = f"{spec.replace('x', 'L x ')}H d{SPECS[spec][2]} ({graph.n_edges})"
        a, b = best[("eap", "ours", spec)], best[("eap", "theirs", spec)]
        print(f"| EAP | {label} | {a:.3f} s | {b:.3f} s | {a / b:.2f} |")
        a, b = best[("fwd", "ours", spec)], best[("fwd", "theirs", spec)]
        print(f"| patched forward, per mask row (ours {args.k} rows/pass) | {label} | {a:.4f} s | {b:.4f} s | {a / b:.2f} |")
        if spec in mem:
            a, b = mem[spec]
            ratio = f"{a / b:.2f}" if b > 0 else "n/a"
            print(f"| peak memory per mask row | {label} | {a:.1f} MiB | {b:.1f} MiB | {ratio} |")
        if spec in acdc:
            a, b, ko, kt, same, trials, n_e = acdc[spec]
            print(f"| ACDC tau={args.tau:g} (auto-circuit's order) | {label} | {a:.1f} s ({trials} trials) | "
                  f"{b:.1f} s ({n_e} forwards) | {a / b:.2f} |")
    print()
    for spec, (err, r, dmax) in checks.items():
        print(f"{spec}: max |logit diff| ours vs auto-circuit (one mask) {err:.2e}; EAP scores Pearson {r:.6f}, "
              f"max |diff| {dmax:.2e}")
    for spec, (_, _, ko, kt, same, _, _) in acdc.items():
        print(f"{spec}: ACDC kept edges ours {ko}, auto-circuit {kt}, equal sets: {same}")
    import importlib.metadata as md
    print(f"\ntorch {torch.__version__}, transformer-lens {md.version('transformer-lens')} (auto-circuit side: 2.18), "
          f"threads 1, best of {args.rounds} interleaved rounds; load average {load0[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
