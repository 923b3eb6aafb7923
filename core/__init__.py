"""circuit-bench core: graph naming, circuits, the patching engine, protocols, registries, results.

The core imports nothing else of ours. Cases, methods and evaluations import the core (never each
other); the orchestration in ``benchmark/`` sits on top and is the only place that knows all three.
"""

__version__ = "0.1.0"
