"""The ``crossfed`` command: every subcommand registered and listed, a fast ``--help``, and an
expected failure shown as one line with its exit code, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from crossfed.client.outbox import LeakError
from crossfed.client.secure import InsecureRequestError
from crossfed.client.serving.service import ServingError
from crossfed.server.deploy.deployment import DeploymentError
from crossfed.server.errors import FederationError
from crossfed.shared import cli
from crossfed.shared.config import ConfigError
from crossfed.shared.data.catalog import CatalogError
from crossfed.shared.data.contract import DataValidationError
from crossfed.shared.data.movielens import DatasetChecksumError, DatasetUnavailableError
from crossfed.shared.errors import CrossfedError, UsageError
from crossfed.shared.privacy.ledger import BudgetExceeded
from crossfed.shared.storage.checked import CorruptStateError, StateWriteError
from crossfed.simulations.experiment import ExperimentError

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "run",
    "sweep",
    "loopback",
    "audit",
    "synthetic-dataset",
    "catalog",
    "certs",
    "gateway",
    "validate",
    "recommend",
    "fold-in",
    "vet",
}
HEAVY = ("torch", "flwr", "ray", "opacus")


def test_every_command_module_is_registered_under_the_name_it_declares() -> None:
    registered = {command.name: command for command in cli.load_commands()}
    declared = {}
    for side in ("server", "client", "simulations"):
        for path in sorted((ROOT / side / "commands").glob("*.py")):
            module = importlib.import_module(f"crossfed.{side}.commands.{path.stem}")
            if isinstance(getattr(module, "command", None), cli.Command):
                declared[module.command.name] = module.command
    assert set(registered) == set(declared) == COMMANDS
    assert all(registered[name] is declared[name] for name in COMMANDS)


def test_help_lists_every_command_with_its_one_line_help(crossfed_command: str) -> None:
    done = subprocess.run([crossfed_command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps long help lines
    for command in cli.load_commands():
        assert f"{command.name} {' '.join(command.help.split())}" in text


def test_building_every_parser_imports_no_torch_flower_or_ray() -> None:
    probe = (
        "import sys\nfrom crossfed.shared.cli import main\n"
        "for argv in (['--help'], *[[name, '--help'] for name in sys.argv[1:]]):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        f"print('LOADED', *sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe, *sorted(COMMANDS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "LOADED"


def test_python_m_crossfed_simulations_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crossfed.simulations", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "usage: crossfed" in done.stdout
    assert all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["run", "--epsilon", "-2"], 2, "error: config key 'epsilon' = -2.0 is out of range"),
        (["catalog", "show", "{tmp}/missing.json"], 1, "error: {tmp}/missing.json: catalog file not found"),
        (
            ["recommend", "--interactions", "x.csv", "--global-model", "run", "--state-dir", "s", "--all"],
            2,
            "error: --all needs --out FILE",
        ),
    ],
)
def test_an_expected_failure_is_one_line_with_its_exit_code(
    crossfed_command: str, tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    if argv[0] == "run":
        argv += ["--out", str(tmp_path / "run")]
    done = subprocess.run([crossfed_command, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith(message.format(tmp=tmp_path)), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------- the error base


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError, 2),
        (ExperimentError, 2),
        (UsageError, 2),
        (DataValidationError, 1),
        (CatalogError, 1),
        (DatasetUnavailableError, 1),
        (DatasetChecksumError, 1),
        (CorruptStateError, 1),
        (StateWriteError, 1),
        (ServingError, 1),
        (FederationError, 1),
        (DeploymentError, 1),
        (BudgetExceeded, 1),
        (LeakError, 1),
        (InsecureRequestError, 1),
    ],
)
def test_every_expected_failure_carries_its_exit_code(error: type[CrossfedError], code: int) -> None:
    assert issubclass(error, CrossfedError) and error.exit_code == code


def test_callers_that_catch_the_builtin_base_still_catch_the_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(DataValidationError, ValueError)
    assert issubclass(StateWriteError, OSError) and issubclass(ServingError, RuntimeError)


def _dispatch(monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> int:
    def fail(args: argparse.Namespace) -> int:
        raise failure

    command = cli.Command("fail", "always fails", "researcher", lambda parser: None, fail)
    monkeypatch.setattr(cli, "load_commands", lambda: [command])
    return cli.main(["fail"])


def test_the_dispatcher_prints_an_expected_failure_and_returns_its_code(monkeypatch, capsys) -> None:
    assert _dispatch(monkeypatch, ConfigError("config key 'x' is wrong")) == 2
    assert capsys.readouterr().err == "error: config key 'x' is wrong\n"
    assert _dispatch(monkeypatch, FileNotFoundError(2, "No such file or directory", "in.csv")) == 1
    assert capsys.readouterr().err == "error: in.csv: No such file or directory\n"


def test_a_bug_keeps_its_traceback(monkeypatch) -> None:
    with pytest.raises(KeyError):
        _dispatch(monkeypatch, KeyError("bug"))
    with pytest.raises(OSError):  # an OSError naming no file is not the user's to fix
        _dispatch(monkeypatch, OSError("socket closed"))
