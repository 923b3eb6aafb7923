"""Training: small transformers taught to implement a high-level model (a compiled Tracr program or a
hand-written HookedRootModule) on a known circuit, and the files they ship as.

- :mod:`training.correspondence`: ``Correspondence`` (HL node -> LL locations), the LL size rule, the
  Tracr mapping;
- :mod:`training.trainer`: ``TrainConfig``, ``SIITTrainer`` (IIT + strict + behaviour losses);
- :mod:`training.model_files`: model directories (safetensors + JSON), hub push/pull;
- :mod:`training.registry`: the trained models (shipped under ``cases/siit/models``, or trained here).

Below the cases: it imports only ``core``; a case brings its own high-level model and data.
"""
