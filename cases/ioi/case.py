"""The IOI case: a SIIT-trained 6-layer transformer that does indirect-object identification on our
own templates, with a known circuit (duplicate head a1.h1 -> S-inhibition a2.h1 -> name mover a4.h1,
MLP0 as the token encoder), and a behaviour-only ``natural`` twin.

Data (``dataset``): held-out (``test`` split) prompts; the corrupted twin is the ABC prompt (the
second mention of S replaced by a third name), so patching really changes the answer. Labels: the IO
token at the last position (-100 elsewhere) for the clean prompts; for the corrupted prompts the same
IO token (ABC has no answer of its own, and the metric compares the same two logits on both runs;
with ``corruption="resample"`` the corrupted prompt's own IO). ``meta["wrong"]`` holds the S token
(the other side of the logit difference) in the same layout. ``mask`` = the last position only.

Metrics (``metrics``): ``logit_diff`` (IO - S), ``accuracy`` (argmax = IO) and ``kl`` (to the clean
model). ``--model KIND`` loads the shipped ``cases/ioi/models/KIND``; a locally trained model (``train ioi``
writes to the user data directory) only when named with ``--model-dir DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.circuit import Circuit
from core.data import CaseData
from core.graph import Graph
from core.metrics import IGNORE, accuracy, kl_divergence, logit_diff
from core.patching import PatchEngine, interchange
from core.protocols import Case
from training import registry
from training.model_files import WEIGHTS, is_model_dir, load_model_dir

from cases.ioi import circuit as ioi_circuit
from cases.ioi.data import CORRUPTIONS, FAMILIES, SEQ_LEN, build_tokenizer, corrupt, encode, last_position_labels, sample_prompts
from cases.tokenizer import WordTokenizer

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

SHIPPED = Path(__file__).resolve().parent / "models"
TOKENIZER_FILE = "tokenizer.json"


class IOICase(Case):
    id = "ioi"
    kind = "ioi"
    description = ("Indirect object identification on our own templates ('Then, B and A went to the park. A gave the "
                   "ball to' -> B): SIIT-trained 6-layer model with duplicate (a1.h1), S-inhibition (a2.h1) and "
                   "name-mover (a4.h1) heads and MLP0 as token encoder; ABC-corrupted counterfactuals.")
    output_type = "categorical"
    wrong_answers = True  # datasets carry the S token as wrong_labels: --metric logit-diff (IO - S)
    models = ("siit", "natural")

    def __init__(self):
        self.flags = {"natural_ground_truth": "the natural model is trained on behaviour only; its ground truth "
                                              "is the intended circuit, not enforced by training"}

    # ---- models ---------------------------------------------------------------------------------
    @staticmethod
    def model_dir(kind: str) -> Path:
        """Where the model of ``kind`` is loaded from: the shipped directory (never a local training run)."""
        return SHIPPED / kind

    def model_ref(self, model: str | None = None, model_dir: str | None = None):
        """The shipped model of ``model`` (a kind), or the directory ``model_dir``; weights and tokenizer hashed."""
        weights = (WEIGHTS, TOKENIZER_FILE)
        if model_dir is not None:
            return registry.explicit_ref(self.id, model_dir, model, weights=weights)
        kind = self.resolve_model(model)
        return registry.directory_ref(self.model_dir(kind), kind, "shipped", weights)

    def data_spec(self, model: str | None = None) -> dict[str, Any]:
        return {"corruption": "abc", "split": "test"}

    @staticmethod
    def load_dir(directory: str | Path, device: str = "cpu") -> tuple["HookedTransformer", Circuit]:
        """(model with the graph hooks on, ground truth) from a model directory; checks its tokenizer."""
        d = Path(directory)
        model, truth = load_model_dir(d, device=device)
        tok_file = d / TOKENIZER_FILE
        if tok_file.is_file() and WordTokenizer.load(tok_file).vocab != build_tokenizer().vocab:
            raise ValueError(f"{d}: the model's tokenizer differs from the IOI generator's vocabulary")
        return model, truth

    def load_model(self, model: str | None = None, device: str = "cpu") -> "HookedTransformer":
        kind = self.resolve_model(model)
        d = self.model_dir(kind)
        if not d.is_dir():
            raise FileNotFoundError(f"no {kind} IOI model at {d} (train one: python main.py train ioi --kind {kind})")
        return self.load_dir(d, device)[0]

    def ground_truth(self, model: str | None = None) -> Circuit:
        self.resolve_model(model)
        return ioi_circuit.ground_truth()

    # ---- data -------------------------------------------------------------------------------------
    def dataset(self, n: int = 200, seed: int = 0, model: str | None = None, corruption: str = "abc",
                split: str = "test") -> CaseData:
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}; expected one of {', '.join(CORRUPTIONS)}")
        tok = build_tokenizer()
        prompts = sample_prompts(n, seed, split)
        twins = corrupt(prompts, corruption, seed)
        clean, bad = encode(prompts, tok), encode(twins, tok)
        c_labels = last_position_labels(clean.io)
        x_labels = last_position_labels(clean.io if corruption == "abc" else bad.io)
        meta: dict[str, Any] = {
            "corruption": corruption, "split": split,
            "wrong": last_position_labels(clean.s),
            "corrupted_wrong": last_position_labels(clean.s if corruption == "abc" else bad.s),
            "io": clean.io, "s": clean.s,
            "third": torch.tensor([tok.token_id(p.s2) for p in twins]) if corruption == "abc" else None,
            "clean_prompts": [p.text for p in prompts], "corrupted_prompts": [p.text for p in twins],
            "families": [p.family for p in prompts],
        }
        mask = torch.zeros(n, SEQ_LEN, dtype=torch.bool)
        mask[:, -1] = True
        return CaseData(clean.tokens, bad.tokens, c_labels, x_labels, mask, seed, meta, wrong_labels=meta["wrong"])

    # ---- metrics ---------------------------------------------------------------------------------
    def metrics(self, logits: torch.Tensor, data: CaseData, clean_logits: torch.Tensor | None = None) -> dict[str, float]:
        """``logit_diff`` (IO - S), ``accuracy`` and (given the clean model's logits) ``kl``, on the last position."""
        out = {"logit_diff": _item(logit_diff(logits, data.clean_labels, data.meta["wrong"], data.mask)),
               "accuracy": _item(accuracy(logits, data.clean_labels, data.mask))}
        if clean_logits is not None:
            out["kl"] = _item(kl_divergence(logits, clean_logits, data.mask))
        return out

    def info(self) -> dict[str, Any]:
        tok = build_tokenizer()
        out = super().info()
        out.update({"seq_len": SEQ_LEN, "vocab_size": len(tok), "n_names": len(tok.names),
                    "template_families": dict(FAMILIES), "corruptions": list(CORRUPTIONS),
                    "hl_graph": ioi_circuit.hl_graph(), "correspondence": dict(ioi_circuit.CIRCUIT_NODES),
                    "ground_truth": self.ground_truth().to_json(),
                    "model_dirs": {k: str(self.model_dir(k)) for k in self.models}, "trained_models": _trained()})
        return out


def _trained() -> dict[str, str]:
    """Locally trained IOI models (``train ioi``'s default output), loaded only with ``--model-dir``."""
    root = registry.local_dir() / "ioi"
    return {k: str(root / k) for k in IOICase.models if is_model_dir(root / k)}


def _item(x: torch.Tensor):
    return float(x) if x.dim() == 0 else x.tolist()


@torch.no_grad()
def evaluate_model(model: "HookedTransformer", data: CaseData, truth: Circuit | None = None) -> dict[str, float]:
    """Accuracy and logit difference on the clean and corrupted prompts, and the ground-truth circuit's
    faithfulness under ABC patching (``PatchEngine`` + ``Graph.mask_for``):

    ``gt_logit_diff_kept`` = LD(circuit) / LD(full model); ``gt_faithfulness`` =
    (LD(circuit) - LD(empty)) / (LD(full) - LD(empty)) (empty = every edge from the corrupted run);
    ``no_name_mover_*`` the same with ``a4.h1`` removed from the full graph (``node_edge_mask`` of
    every other node) and from the ground truth.
    """
    truth = truth or ioi_circuit.ground_truth()
    graph = Graph.from_model(model)
    engine = PatchEngine(model, graph, data, "categorical", ablation="corrupted")
    wrong = data.meta["wrong"].to(engine.device)
    labels, mask = data.clean_labels.to(engine.device), engine.mask

    def ld(logits):
        return logit_diff(logits, labels, wrong, mask)

    full, empty = engine.full_mask(), torch.zeros_like(engine.full_mask())
    gt = graph.mask_for(truth).to(full)
    no_nm = graph.node_edge_mask([n for n in graph.nodes if n != "a4.h1"]).to(full)
    gt_no_nm = graph.node_edge_mask([n for n in truth.nodes if n != "a4.h1"]).to(full) * gt
    logits = engine.run(torch.stack([full, empty, gt, no_nm, gt_no_nm]))
    lds = ld(logits)
    base, floor = float(lds[0]), float(lds[1])
    norm = lambda x: (float(x) - floor) / (base - floor) if base != floor else float("nan")  # noqa: E731
    return {
        "accuracy": float(accuracy(engine.clean_logits, labels, mask)),
        "logit_diff": base,
        "corrupted_logit_diff": float(ld(engine.corrupted_logits)),
        "empty_circuit_logit_diff": floor,
        "gt_logit_diff": float(lds[2]),
        "gt_logit_diff_kept": float(lds[2]) / base,
        "gt_faithfulness": norm(lds[2]),
        "gt_accuracy": float(accuracy(logits[2], labels, mask)),
        "gt_kl": float(kl_divergence(logits[2], engine.clean_logits, mask)),
        "no_name_mover_logit_diff": float(lds[3]),
        "no_name_mover_faithfulness": norm(lds[3]),
        "gt_no_name_mover_faithfulness": norm(lds[4]),
        "n_edges": graph.n_edges, "gt_edges": int(gt.sum()),
    }


@torch.no_grad()
def interchange_accuracy(model: "HookedTransformer", base: torch.Tensor, source: torch.Tensor) -> dict[str, float]:
    """IIA per HL node: the fraction of (base, source) rows where the LL with the node's LL component
    taken from ``source`` gives the HL's answer under the same interchange (last position; rows where
    the HL answer is undefined are skipped). Keys are the semantic HL names."""
    from cases.ioi.hl_model import build_hl_model, hl_labels  # the HL model module imports transformer_lens

    corr = ioi_circuit.correspondence(model.cfg.n_layers, model.cfg.n_heads)
    hl = build_hl_model()
    device = next(model.parameters()).device
    base, source = base.to(device), source.to(device)
    out = {}
    for key, ll_nodes in corr.mapping.items():
        target = hl_labels(interchange(hl.to(device), base, source, [corr.hl_locs[key]]))[:, -1]
        pred = interchange(model, base, source, [corr.ll_locs[n] for n in ll_nodes])[:, -1].argmax(-1)
        keep = target != IGNORE
        out[corr.meta["hl_names"][key]] = float((pred[keep] == target[keep]).float().mean()) if keep.any() else float("nan")
    return out
