"""Methods defined outside the package, as a user would (used by tests/benchmark/test_cli.py)."""

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


class Slow(Method):
    """Scores like SenderIndex after ``seconds`` of sleep: a job long enough to kill its worker mid-run
    (tests/benchmark/test_ray_cluster.py). With $CIRCUIT_BENCH_TEST_MARKERS set it first drops a file there
    naming the case and the Ray node it runs on (and where its ``core`` package was imported from), so a
    test can tell when and where it started and which copy of the code ran."""
    name = "slow"

    def __init__(self, seconds: float = 6.0):
        self.seconds = seconds

    def discover(self, problem):
        import os
        import time
        from pathlib import Path

        marker = os.environ.get("CIRCUIT_BENCH_TEST_MARKERS")
        if marker:
            node = "local"
            try:
                import ray

                if ray.is_initialized():
                    node = ray.get_runtime_context().get_node_id()
            except ImportError:
                pass
            import core

            Path(marker, f"{problem.case_id}.{os.getpid()}.{node}").write_text(f"{node}\n{core.__file__}")
        time.sleep(self.seconds)
        return MethodOutput(edge_scores={e: float(i) for i, e in enumerate(problem.graph.edges)})
