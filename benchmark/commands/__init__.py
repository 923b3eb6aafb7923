"""The commands of the CLI, one module per command family (``benchmark.cli`` loads them by name).

``cases`` (list, show, build), ``run``, ``evaluate`` (eval roc, faithfulness, node realism, iit, and the
study and direction evaluations), ``bench`` (benchmark), ``leaderboard``, ``train`` (iit, ioi,
direction) and ``mib`` (export, import). A command's validation phase runs inside
``console.user_input()``: the user's mistakes are one-line usage errors (exit 2); a failure after the
work started keeps its traceback (exit 1).
"""
