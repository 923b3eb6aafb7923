"""SIIT: train small transformers to implement a high-level model (a compiled Tracr program or a
hand-written HookedRootModule) on a known circuit, and ship them as benchmark models.

- :mod:`cases.siit.correspondence`: ``NodeLoc``, ``Correspondence``, the LL size rule, Tracr mapping;
- :mod:`cases.siit.trainer`: ``TrainConfig``, ``SIITTrainer`` (IIT + strict + behaviour losses);
- :mod:`cases.siit.model_files`: model directories (safetensors + JSON), hub push/pull;
- :mod:`cases.siit.registry`: ``available_models``, ``load_trained``.
"""

from cases.siit.correspondence import Correspondence, NodeLoc, ll_size, tracr_correspondence
from cases.siit.registry import SHIPPED_DIR, available_models, load_trained
from cases.siit.trainer import SIITTrainer, TrainConfig

__all__ = ["Correspondence", "NodeLoc", "ll_size", "tracr_correspondence", "SIITTrainer", "TrainConfig",
           "SHIPPED_DIR", "available_models", "load_trained"]
