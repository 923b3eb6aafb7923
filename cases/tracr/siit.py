"""SIIT on a Tracr case: the HL model, LL config, correspondence, ground truths and data training needs,
and the IIT metrics of a trained model on its own held-out test split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.circuit import Circuit
from training import model_files, registry
from training.correspondence import Correspondence, ll_config, tracr_correspondence
from training.trainer import SIITData, SIITTrainer, TrainConfig, split_disjoint

GRAPH_FLAGS = dict(use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True)


@dataclass
class TracrSIITSetup:
    case_id: str
    hl: object                 # the compiled HookedTransformer
    output_type: str
    ll_config: dict            # HookedTransformerConfig kwargs (graph flags off; they do not change weights)
    corr: Correspondence
    hl_truth: Circuit
    ll_truth: Circuit


def build_ll(config: dict, device: str = "cpu", graph_flags: bool = False):
    """An LL HookedTransformer (initialised with ``config['seed']``)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kw = {**config, "device": str(device), "dtype": torch.float32}
    if graph_flags:
        kw.update(GRAPH_FLAGS)
    return HookedTransformer(HookedTransformerConfig(**kw), move_to_device=True)


def tracr_setup(case, seed: int = 0, same_size: bool = False, ratio: float | None = None,
                head_map: dict | None = None) -> TracrSIITSetup:
    cm = case.compiled_model()
    cfg = ll_config(case.id, cm.config, seed=seed, same_size=same_size, ratio=ratio)
    corr = tracr_correspondence(cm.component_of, cfg["n_layers"], cfg["n_heads"], head_map=head_map)
    corr.check_order(cm.ground_truth)
    return TracrSIITSetup(case_id=str(case.id), hl=cm.model, output_type=cm.output_type, ll_config=cfg,
                          corr=corr, hl_truth=cm.ground_truth, ll_truth=corr.ll_ground_truth(cm.ground_truth))


SCORED_POSITIONS = ("real", "defined")


def tracr_data(case, num_samples: int, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.2,
               scored: str = "real") -> SIITData:
    """Distinct inputs from the case's own sampler (``sample_inputs``: exhaustive when the input space is
    small), padded to n_ctx, split into disjoint train/val/test.

    Scored positions: ``real`` (every non-BOS, non-PAD position, what the compiled HL outputs there) or
    ``defined`` (only where the RASP program's output is not None; the trainer then also scores an
    interchange at a position only where the *source* is defined there, see ``SIITData.pair_masked``).
    At a None position (e.g. the last one of ``shift_by(-1)``) the compiled model's output is whatever its
    MLPs make of an empty value, and after an interchange from a shorter source it reads PAD."""
    if scored not in SCORED_POSITIONS:
        raise ValueError(f"scored positions must be one of {SCORED_POSITIONS}, got {scored!r}")
    clean, _, meta = case.sample_inputs(num_samples, seed=seed)
    inputs = [["BOS", *x] for x in clean]
    width = case.max_seq_len + 1
    tokens = case.encode(inputs, width)
    lengths = torch.tensor([len(x) for x in inputs])
    pos = torch.arange(width)[None, :]
    mask = (pos < lengths[:, None]) & (pos > 0)
    if scored == "defined":
        outs = case.evaluate(inputs)
        mask &= torch.tensor([[v is not None for v in o] + [False] * (width - len(o)) for o in outs])
    data = split_disjoint(tokens, mask, val_fraction, test_fraction, seed)
    data.meta.update(sampler=meta.get("sampler"), exhaustive=meta.get("exhaustive"), requested=num_samples,
                     data_seed=seed)
    if scored != "real":  # absent for ``real``: the models trained before this option read back unchanged
        data.meta["scored"] = scored
    return data


def evaluate_trained(case, kind: str = "siit", max_pairs: int = 512, per_node: bool = True, directory=None):
    """(trainer, metrics): IIA, accuracy and strict accuracy of the trained model ``kind`` of a Tracr
    ``case`` (the shipped one, or the model in ``directory``) on the test split its training used
    (rebuilt from its metadata, so disjoint from training)."""
    d = Path(directory) if directory is not None else registry.model_dir(str(case.id), kind)
    if d is None:
        raise FileNotFoundError(f"case {case.id} has no {kind} model (train one: python main.py train iit -i {case.id})")
    meta = model_files.read_metadata(d)
    setup = tracr_setup(case, seed=meta["seed"])
    data = tracr_data(case, meta["data"]["requested"], seed=meta["data"]["data_seed"],
                      scored=meta["data"].get("scored", "real"))
    model, truth = model_files.load_model_dir(d)
    if truth != setup.ll_truth:
        raise ValueError(f"{d}: its ground truth differs from the one the correspondence gives today")
    cfg = meta["train_config"]
    trainer = SIITTrainer(setup.hl, model, setup.corr, data, setup.output_type,
                          TrainConfig(**{**cfg, "betas": tuple(cfg["betas"])}))
    metrics: dict[str, Any] = trainer.evaluate("test", max_pairs=max_pairs, per_node=per_node)
    return trainer, metrics
