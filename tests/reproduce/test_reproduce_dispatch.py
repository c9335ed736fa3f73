"""`python -m reproduce`: a dispatcher that imports subcommands lazily."""

import subprocess
import sys

import reproduce.__main__ as dispatch


def test_unknown_and_help(capsys):
    assert dispatch.main(["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err
    assert dispatch.main(["--help"]) == 0
    assert "table1" in capsys.readouterr().out


def test_missing_module_gives_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(dispatch.SUBCOMMANDS, "later", ("reproduce.not_written_yet", "main", "x"))
    assert dispatch.main(["later"]) == 2
    assert "reproduce/not_written_yet.py does not exist yet" in capsys.readouterr().err


def test_toy_is_mapped_to_reproduce_toy():
    assert dispatch.SUBCOMMANDS["toy"][:2] == ("reproduce.toy", "main")


def test_python_dash_m_runs_a_subcommand(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reproduce", "table1", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Not measured (no results file)" in proc.stdout
