"""Orchestration on top of cases, methods and evaluations: the CLI, the runner (jobs, sweeps,
executors, resume) and the leaderboard. Nothing below imports this package."""
