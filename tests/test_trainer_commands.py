"""``python -m trainer VERB``: the verbs listed from ``trainer/commands``, an unknown verb refused, a verb run."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

from app.core.exit_codes import ExitCode
from trainer import commands
from trainer.__main__ import main, verbs


def test_help_lists_every_command_module_with_one_line(capsys: pytest.CaptureFixture[str]):
    assert main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    modules = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    assert sorted(v.replace("-", "_") for v in verbs()) == modules
    assert {"train", "export", "evaluate", "summary", "train-or", "pose-sheet"} <= set(verbs())
    for verb, line in verbs().items():
        assert line and f"  {verb} " in out and line in out


def test_every_command_module_has_a_parser_and_main():
    for verb in verbs():
        module = __import__(f"trainer.commands.{verb.replace('-', '_')}", fromlist=["main"])
        parser = module.build_parser()
        assert parser.prog == f"python -m trainer {verb}"
        assert callable(module.main)


def test_a_verb_with_underscores_is_the_same_verb(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_:
        main(["pose_labels", "--help"])
    assert exit_.value.code == 0 and "python -m trainer pose-labels" in capsys.readouterr().out


def test_an_unknown_verb_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]):
    assert main(["no-such-verb", "--x"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "no-such-verb" in captured.err


def test_a_verb_runs_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "trainer", "summary", "--input-size", "128", "--landmarks", "68",
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts and all(isinstance(v, int) and v > 0 for v in counts.values())
    unknown = subprocess.run([sys.executable, "-m", "trainer", "nope"], capture_output=True, text=True, timeout=300)
    assert unknown.returncode == ExitCode.USAGE and len(unknown.stderr.strip().splitlines()) == 1
