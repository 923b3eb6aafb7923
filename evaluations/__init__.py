"""Evaluators: ROC/AUROC, faithfulness curves, node realism, IIT node effects, plots.

Imports only the core. ``plots`` imports matplotlib lazily (call its functions to pay for it).
"""

from evaluations.faithfulness import (MIB_FRACTIONS, FaithfulnessCurve, circuit_faithfulness,
                                      faithfulness_curve, select_top, task_metric)
from evaluations.iit import IITReport, iit_report, node_effects, to_csv, to_json
from evaluations.realism import RealismRow, gt_node_realism, node_realism
from evaluations.roc import (RocCurve, edge_roc, merge_qkv_scores, node_roc, pareto_front, pessimistic_auc,
                             roc_from_scores, roc_from_sweep)

__all__ = ["MIB_FRACTIONS", "FaithfulnessCurve", "IITReport", "RealismRow", "RocCurve", "circuit_faithfulness",
           "edge_roc", "faithfulness_curve", "gt_node_realism", "iit_report", "merge_qkv_scores", "node_effects",
           "node_realism", "node_roc", "pareto_front", "pessimistic_auc", "roc_from_scores", "roc_from_sweep",
           "select_top", "task_metric", "to_csv", "to_json"]
