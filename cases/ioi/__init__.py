"""The IOI case (indirect object identification) with a SIIT-trained model and a known circuit.

- :mod:`cases.ioi.data`: seeded prompt generator (4 template families, ABC / resample corruptions,
  disjoint train/test splits);
- :mod:`cases.tokenizer` (shared with the direction case): word-level tokenizer over the generator's vocabulary;
- :mod:`cases.ioi.hl_model`: the high-level causal model (duplicate -> S-inhibition -> name mover);
- :mod:`cases.ioi.circuit`: the HL->LL correspondence and the LL ground-truth circuit;
- :mod:`cases.ioi.case`: ``IOICase`` (id ``ioi``), metrics, IIA and faithfulness checks;
- :mod:`cases.ioi.train`: ``train_ioi`` (the ``train ioi`` command is in :mod:`benchmark.commands.train`).
"""
