"""The auto-circuit side of ``benchmarks/vs_autocircuit.py``; runs in auto-circuit's own venv.

    $AC_VENV/bin/python benchmarks/autocircuit_worker.py      (started by vs_autocircuit.py)

Imports nothing of circuit-bench (auto-circuit needs transformer-lens 2.18). Reads one JSON command
per line on stdin and answers one JSON line on stdout:

    {"cmd": "load", "name": N, "dir": D}     model D/N.safetensors + D/N.json, data D/N.data.safetensors
    {"cmd": "eap", "name": N}                auto-circuit's EAP (mask_gradient_prune_scores, logit grad,
                                             avg_diff answers, mask 0), timed; returns scores by edge name
    {"cmd": "forward", "name": N, "ablate": [edge names], "mem": bool}   one patched forward (one mask),
                                             timed; returns logits (and the peak-RSS increase if mem)
    {"cmd": "acdc", "name": N, "tau": T}     auto-circuit's ACDC at one tau (KL target), timed;
                                             returns the kept edges and the order edges were visited
    {"cmd": "quit"}

The timed part is the library call alone (the model is made patchable at load time), one torch thread.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore")
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

torch.set_num_threads(1)
MODELS: dict = {}


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def reset_peak() -> None:
    """Return freed heap to the system (glibc), then reset the kernel's peak-RSS mark (VmHWM) to the
    current RSS (Linux >= 4.0): the next peak is what the next call adds to live memory."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def load(name: str, folder: str) -> dict:
    from auto_circuit.data import PromptDataLoader, PromptDataset
    from auto_circuit.utils.graph_utils import patchable_model
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with open(f"{folder}/{name}.json") as f:
        cfg = json.load(f)
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    missing = model.load_state_dict(load_file(f"{folder}/{name}.safetensors"), strict=False).missing_keys
    params = {k for k, _ in model.named_parameters()}
    assert not params & set(missing), sorted(params & set(missing))
    model.eval()
    data = load_file(f"{folder}/{name}.data.safetensors")
    clean, corrupt, ans, wrong = data["clean"], data["corrupted"], data["answers"], data["wrong"]
    ds = PromptDataset(list(clean), list(corrupt), [a.view(1) for a in ans], [w.view(1) for w in wrong])
    loader = PromptDataLoader(ds, seq_len=None, diverge_idx=0, batch_size=len(clean), shuffle=False)
    pm = patchable_model(model, factorized=True, slice_output=None, separate_qkv=True, device=torch.device("cpu"))
    MODELS[name] = {"model": pm, "loader": loader, "clean": clean}
    return {"edges": len(pm.edges)}


def eap(name: str) -> dict:
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

    m = MODELS[name]
    pm = m["model"]
    pm.out_slice = (slice(None), -1)  # the answers are for the last position ("last_seq")
    try:
        t = time.perf_counter()
        scores = mask_gradient_prune_scores(pm, m["loader"], None, grad_function="logit",
                                            answer_function="avg_diff", mask_val=0.0)
        sec = time.perf_counter() - t
    finally:
        pm.out_slice = (slice(None),)
    out = {e.name: float(scores[e.dest.module_name][e.patch_idx]) for e in pm.edges}
    for w in pm.dest_wrappers:  # leave the model as found
        w.patch_mask.grad = None
    return {"seconds": sec, "scores": out}


def forward(name: str, ablate: list[str], mem: bool) -> dict:
    from auto_circuit.utils.ablation_activations import src_ablations
    from auto_circuit.utils.graph_utils import patch_mode, set_all_masks

    m = MODELS[name]
    pm, clean = m["model"], m["clean"]
    batch = next(iter(m["loader"]))
    with torch.inference_mode():
        patch = src_ablations(pm, batch.corrupt)
    set_all_masks(pm, 0.0)
    wanted = set(ablate)
    for e in pm.edges:
        if e.name in wanted:
            e.patch_mask(pm).data[e.patch_idx] = 1.0
    with torch.inference_mode(), patch_mode(pm, patch):
        if mem:  # warm-up (one-time allocations), then the peak of a second forward alone
            pm(clean)
            reset_peak()
        before = rss_kib()
        t = time.perf_counter()
        logits = pm(clean)
        sec = time.perf_counter() - t
    peak = peak_kib()
    set_all_masks(pm, 0.0)
    out = {"seconds": sec, "logits": logits.flatten().tolist()}
    if mem:
        out["peak_increase_kib"] = peak - before
    return out


def acdc(name: str, tau: float) -> dict:
    from auto_circuit.prune_algos.ACDC import acdc_prune_scores
    from auto_circuit.utils.graph_utils import set_all_masks

    m = MODELS[name]
    pm = m["model"]
    order = [e.name for e in sorted(pm.edges, key=lambda x: x.dest.layer, reverse=True)]  # ACDC's own order
    t = time.perf_counter()
    scores = acdc_prune_scores(pm, m["loader"], None, tao_exps=[0], tao_bases=[tau])
    sec = time.perf_counter() - t
    set_all_masks(pm, 0.0)
    kept = [e.name for e in pm.edges if float(scores[e.dest.module_name][e.patch_idx]) == float("inf")]
    return {"seconds": sec, "kept": kept, "order": order}


def main() -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "quit":
            break
        if c == "load":
            out = load(cmd["name"], cmd["dir"])
        elif c == "eap":
            out = eap(cmd["name"])
        elif c == "forward":
            out = forward(cmd["name"], cmd["ablate"], cmd.get("mem", False))
        elif c == "acdc":
            out = acdc(cmd["name"], float(cmd["tau"]))
        else:
            out = {"error": f"unknown command {c!r}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
