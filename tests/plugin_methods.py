"""Methods defined outside the package, as a user would (used by tests/test_cli.py)."""

from core.protocols import Method, MethodOutput


class SenderIndex(Method):
    name = "sender-index"

    def __init__(self, power: float = 1.0):
        self.power = power

    def discover(self, problem):
        return MethodOutput(edge_scores={e: float(i) ** self.power for i, e in enumerate(problem.graph.edges)})


class Crashing(Method):
    name = "crashing"

    def discover(self, problem):
        raise RuntimeError("deliberate failure")


class MeanOfPositives:
    """A user *direction* method (issue 11): the mean activation of the positive examples."""

    def fit(self, problem):
        return problem.acts[problem.labels == 1].mean(0)
