"""The command line and the demo (the main job)."""
import subprocess
import sys

import pytest

from fastmlp import cli


def test_demo_xor_prints_loss_and_full_accuracy(capsys):
    assert cli.main(["demo", "xor"]) == 0
    out = capsys.readouterr().out
    assert out.count("loss") >= 10 and "accuracy 100%" in out


def test_demo_disk(capsys):
    assert cli.main(["demo", "disk"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy ")[1].split("%")[0])
    assert acc >= 95.0


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_demo_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "mnist"])
    assert info.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_python_dash_m_runs_the_demo():
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "demo", "xor"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy 100%" in proc.stdout
