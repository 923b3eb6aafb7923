"""IIT metrics of a trained (SIIT / IIT / natural) Tracr model on its own held-out test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_trained(case, kind: str = "siit", max_pairs: int = 512, per_node: bool = True, directory=None):
    """(trainer, metrics): IIA, accuracy and strict accuracy of the trained model ``kind`` of a Tracr
    ``case`` (the shipped one, or the model in ``directory``) on the test split its training used
    (rebuilt from its metadata, so disjoint from training)."""
    from cases.siit import model_files, registry
    from cases.siit.tracr_setup import tracr_data, tracr_setup
    from cases.siit.trainer import SIITTrainer, TrainConfig

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
