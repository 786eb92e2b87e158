"""Every kind of bad input ends in one clear line naming the field or file, never a traceback
and never silent acceptance: the table of `benchmarks/reliability.py` (part 1), as a test."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from reliability import field_cases, file_cases, run_case  # noqa: E402


def test_every_config_field_refuses_bad_values_by_name():
    cases = field_cases()
    assert len(cases) >= 500  # every field of five shipped configs, several bad values each
    failures = [(what, r["message"]) for what, argv, names in cases if not (r := run_case(argv, names))["clear"]]
    assert not failures, failures[:5]


def test_damaged_files_and_folders_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cases = file_cases(tmp_path)
    assert len(cases) >= 45
    results = {what: run_case(argv, names) for what, argv, names in cases}
    assert not [w for w, r in results.items() if r["accepted"]]  # nothing bad is accepted silently
    assert not [(w, r["message"]) for w, r in results.items() if not r["clear"]]
