"""The shipped SIIT / IIT / natural models of the Tracr cases (``cases/siit/models/<case>/<kind>/``).

The training library that made them lives in :mod:`training` (trainer, correspondence, model files,
the trained-model registry); the names below are re-exported so ``from cases.siit import ...`` keeps
working.
"""

from training.correspondence import Correspondence, ll_size, tracr_correspondence
from training.registry import SHIPPED_DIR, available_models, load_trained
from training.trainer import SIITTrainer, TrainConfig
from core.naming import NodeLoc

__all__ = ["Correspondence", "NodeLoc", "ll_size", "tracr_correspondence", "SIITTrainer", "TrainConfig",
           "SHIPPED_DIR", "available_models", "load_trained"]
