"""The console: what every command shares with the terminal, and nothing else of ours.

``UsageError`` (a bad command line: one line on stderr, exit status 2), the argparse ``Parser`` that
raises it, ``user_input()`` (the validation phase of a command: a library's ValueError, TypeError, ...
raised there becomes a UsageError), ``json_stdout``/``emit`` (``--json`` prints exactly one document on
stdout), ``log``, the torch set-up of a command (threads, device check) and progress bars. A leaf of
``benchmark``: it imports only ``core`` (the registry's UnknownNameError, the result store's ``dumps``),
so any layer of the CLI can use it.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from core.registry import UnknownNameError
from core.results import dumps

EXIT_USAGE = 2
EXIT_FAILED = 1
METRIC_CHOICES = ["faithfulness", "task", "logit-diff", "kl", "ce", "mse"]  # core.protocols.METRICS + aliases


class UsageError(Exception):
    """A bad command line or unknown name: one line on stderr, exit status 2."""


# what a library raises for bad input: inside ``user_input()`` each becomes a one-line UsageError
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, ImportError, UnknownNameError)


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (a KeyError's without its quotes), or its type's name."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args and not isinstance(err, UnknownNameError) \
        else str(err)
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """The validation phase of a command: everything that checks the user's input before work starts
    (parsing method flags, building a method from its parameters, loading plug-ins, resolving a case or
    model, checking values). A ValueError, TypeError, KeyError, FileNotFoundError, ImportError or unknown
    name raised here is the user's: a one-line UsageError (exit status 2). Outside it an exception is a
    failure of the work and keeps its traceback (exit status 1)."""
    try:
        yield
    except USER_ERRORS as err:
        raise UsageError(one_line(err)) from err


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name close matches, and no prefix matching of flags."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 -- argparse hook
        raise UsageError(message + _hint(self, message))


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings]


def _hint(parser: argparse.ArgumentParser, message: str) -> str:
    words: list[str] = []
    if "unrecognized arguments:" in message:
        words = [w.split("=")[0] for w in message.split("unrecognized arguments:")[1].split() if w.startswith("-")]
        known = _option_strings(parser)
    elif "invalid choice:" in message:
        words = [message.split("invalid choice:")[1].split("'")[1]]
        known = [c for a in parser._actions if a.choices for c in a.choices]
    else:
        return ""
    known = [k for k in known if "_" not in k or k.replace("_", "-") not in known]  # one spelling per flag
    close = [m for w in words for m in difflib.get_close_matches(w, known, n=2, cutoff=0.6)]
    return f" (did you mean {', '.join(dict.fromkeys(close))}?)" if close else ""


_REAL_STDOUT: list = []  # set by main() while a --json command runs with stdout sent to stderr


@contextlib.contextmanager
def json_stdout(enabled: bool):
    """While working, send stdout to stderr (libraries print); yield the real stdout for the document."""
    if _REAL_STDOUT:  # main() already redirected the whole command
        yield _REAL_STDOUT[-1]
        return
    real = sys.stdout
    if not enabled:
        yield real
        return
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real


def emit(doc: Any, stream) -> None:
    stream.write(dumps(doc, indent=1) + "\n")
    stream.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _int_at_least(lo: int):
    """An argparse type: an integer >= ``lo`` (a bad value is a one-line usage error at parse time)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


POSITIVE_INT = _int_at_least(1)
SEED = _int_at_least(0)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (no nan, no inf)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def check_score_floor(value: float | None) -> None:
    """``--score-floor R`` (leaderboard, eval agreement): None or a relative floor in [0, 1); a one-line
    usage error otherwise (nan and inf included)."""
    if value is not None and not 0 <= value < 1:
        raise UsageError(f"--score-floor must be in [0, 1), got {value}")


def check_out_dir(out, flag: str = "--out") -> None:
    """``out`` is (or can be made) a directory this process can write: checked before any work by
    creating it and a probe file in it. A one-line usage error otherwise."""
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise UsageError(f"{flag} {out}: exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".circuit-bench-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{flag} {out}: not a writable directory ({err.strerror or err})") from None


def setup_torch(device: str = "cpu") -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise UsageError(f"--device {device}: expected cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this torch build or machine has no CUDA device (use --device cpu)")

    if "CIRCUIT_BENCH_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["CIRCUIT_BENCH_THREADS"]))
    elif os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
    quiet_transformer_lens()


def quiet_transformer_lens() -> None:
    """TransformerLens prints "Moving model to device: cpu" on stdout for every model it moves: send its
    prints to stderr, so stdout carries only what the command outputs."""
    from transformer_lens.utilities import devices

    def to_stderr(*args, **kwargs):
        kwargs["file"] = sys.stderr
        print(*args, **kwargs)

    devices.print = to_stderr


def progress(items, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, file=sys.stderr, disable=len(items) < 2)

