"""``benchmarks/run_all.py``: result lines collected from each script, crashes count as missed."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run_all

    return run_all


def write(folder: Path, name: str, body: str) -> None:
    prelude = (
        f"import sys\nsys.path.insert(0, {str(BENCHMARKS)!r})\nfrom _results import print_result\n"
    )
    (folder / f"{name}.py").write_text(prelude + body)


def test_results_of_a_script_are_collected_with_its_verdicts(runner, tmp_path, capsys):
    write(
        tmp_path, "good", "print_result('a / b', '<= 0.05', '0.006', True)\nprint('other line')\n"
    )
    write(tmp_path, "slow", "print_result('c | d', '>= 2x', '1.5x', False)\nsys.exit(1)\n")
    good = runner.run("good", tmp_path)
    slow = runner.run("slow", tmp_path)
    assert [(r.figure, r.target, r.measured, r.ok) for r in good] == [
        ("a / b", "<= 0.05", "0.006", True)
    ]
    # A missed target exits 1: that is the script's verdict, not a crash ("|" becomes "/").
    assert [(r.figure, r.ok) for r in slow] == [("c / d", False)]
    assert "other line" in capsys.readouterr().out  # the script's own output is shown


def test_a_crash_or_a_silent_script_counts_as_missed(runner, tmp_path):
    write(tmp_path, "crash", "print_result('e', '<= 1', '0.5', True)\nraise RuntimeError('boom')\n")
    write(tmp_path, "silent", "print('no result line')\n")
    crash = runner.run("crash", tmp_path)
    assert [r.ok for r in crash] == [True, False]
    assert crash[1].figure == "crash.py runs" and crash[1].measured == "exit status 1"
    silent = runner.run("silent", tmp_path)
    assert [(r.figure, r.ok) for r in silent] == [("silent.py reports", False)]


def test_the_table_lists_every_result_with_its_verdict(runner):
    from _results import Result

    results = [Result("fast", "<= 1", "0.5", True), Result("slow", "<= 1", "2.0", False)]
    table = runner.table(results).splitlines()
    assert table[0].split() == ["figure", "target", "measured", "ok"]
    assert set(table[1]) == {"-", " "}
    assert [row.split() for row in table[2:]] == [
        ["fast", "<=", "1", "0.5", "ok"],
        ["slow", "<=", "1", "2.0", "MISSED"],
    ]


def test_an_unknown_benchmark_is_refused(runner, capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "unknown benchmark(s) nope" in capsys.readouterr().err
