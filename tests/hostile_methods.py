"""Plug-in methods that misbehave (issue 27; used by tests/test_hostile.py and benchmarks/hostile_audit.py)."""

import os
import sys
import time

from core.protocols import Method, MethodOutput


class NaNScores(Method):
    name = "nan-scores"

    def discover(self, problem):
        return MethodOutput(edge_scores={e: float("nan") for e in problem.graph.edges})


class InfScores(Method):
    name = "inf-scores"

    def discover(self, problem):
        return MethodOutput(edge_scores={e: float("inf") for e in problem.graph.edges})


class Exits(Method):
    name = "exits"

    def discover(self, problem):
        sys.exit(3)


class Slow(Method):
    """Sleeps, appends one line to $HOSTILE_LOG per call (to count computations), then scores edges."""

    name = "slow"

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds

    def discover(self, problem):
        time.sleep(float(os.environ.get("HOSTILE_SLEEP", self.seconds)))
        log = os.environ.get("HOSTILE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{problem.case_id} {os.getpid()}\n")
        return MethodOutput(edge_scores={e: float(i) for i, e in enumerate(problem.graph.edges)})
