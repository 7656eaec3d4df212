"""The command-line client (python -m cli) against a real devhost: every command, exit statuses, problems."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import AWAITING_REVIEW, main
from tests.e2e.conftest import Devhost

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string", "constraints": {"required": True}},
        {"name": "score", "type": "number", "constraints": {"minimum": 0}},
    ],
    "primaryKey": "id",
}
DATA = "id,name,score\n1,Ann,3.5\n2,,1\n3,Cid,2\n4,Dee,-1\n5,=Eve,0\n"


class Cli:
    """Runs commands in-process as one devhost user; returns (exit status, stdout, stderr)."""

    def __init__(self, devhost: Devhost, user: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.options = ["--api", devhost.url + "/api", "--user", user, "--timeout", "60"]
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main([*self.options, *argv])
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def cli(devhost: Devhost, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(devhost, "cli-user", capsys)


def test_create_import_review_approve_browse_export_and_delete(cli: Cli, tmp_path: Path) -> None:
    schema, data = tmp_path / "schema.json", tmp_path / "people.csv"
    schema.write_text(json.dumps(SCHEMA))
    data.write_text(DATA)
    status, out, _ = cli("create-dataset", "people", "--schema", str(schema))
    assert status == 0
    dataset = out.strip()

    status, out, err = cli("import", dataset, str(data))
    assert status == AWAITING_REVIEW
    job = out.strip()
    assert f"Import {job}: awaiting_review. rows 5, valid 3, invalid 2" in err
    status, out, _ = cli("errors", job)
    errors = [json.loads(line) for line in out.splitlines()]
    assert [(error["row"], error["column"], error["code"]) for error in errors] == [
        (2, "name", "required"),
        (4, "score", "minimum"),
    ]
    status, out, _ = cli("errors", job, "--csv")
    assert status == 0 and out.splitlines()[0].lstrip("\ufeff").startswith("row,column,code")
    assert len(out.splitlines()) == 3

    status, _, err = cli("approve", job)
    assert status == 0 and f"Import {job}: completed." in err and "inserted 3" in err
    status, out, _ = cli("rows", dataset)
    assert sorted(json.loads(line)["key"] for line in out.splitlines()) == ["1", "3", "5"]
    assert len(cli("rows", dataset, "--limit", "2")[1].splitlines()) == 2
    status, out, _ = cli("row", dataset, "5")
    assert json.loads(out) == {"key": "5", "values": {"id": 5, "name": "=Eve", "score": 0.0}}

    exported = tmp_path / "out.csv"
    status, _, err = cli("export", dataset, "-o", str(exported))
    assert status == 0 and "3 rows" in err
    lines = exported.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "id,name,score" and "5,'=Eve,0.0" in lines  # a formula-like cell is defused

    status, _, err = cli("import", dataset, str(exported), "--mode", "upsert", "--auto-apply")
    assert status == 0 and "unchanged 2" in err and "updated 1" in err  # '=Eve is text now, not =Eve

    status, out, _ = cli("datasets")
    assert dataset in out and "people" in out
    status, _, err = cli("delete", dataset)
    assert status == 0 and f"Deleting dataset {dataset}" in err


def test_a_schema_inferred_from_a_file(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "codes.csv"
    data.write_text("code,count\n00501,3\n007,4\n")
    status, out, _ = cli("create-dataset", "codes", "--infer-from", str(data), "--primary-key", "code")
    assert status == 0
    status, out, _ = cli("show", out.strip())
    shown = json.loads(out)
    assert shown["schema"]["primaryKey"] == ["code"]
    assert [field["type"] for field in shown["schema"]["fields"]] == ["string", "integer"]


def test_problems_are_printed_with_status_1(cli: Cli, tmp_path: Path) -> None:
    status, _, err = cli("show", "01aaaaaaaaaaaaaaaaaaaaaaaa")
    assert status == 1 and err.startswith("loadbay: 404 ")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fields": [{"name": "a", "type": "money"}]}))
    status, _, err = cli("create-dataset", "bad", "--schema", str(bad))
    assert status == 1 and "422" in err and "a: " in err and "money" in err
    status, _, err = cli("import", "01aaaaaaaaaaaaaaaaaaaaaaaa", str(tmp_path / "missing.csv"))
    assert status == 1 and "missing.csv" in err
    status, _, err = cli("import", "x", str(bad), "--map", "nocolumn")
    assert status == 1 and "--map takes FIELD=COLUMN" in err


def test_python_dash_m_cli_runs_and_needs_a_sign_in(devhost: Devhost) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOADBAY_API": devhost.url + "/api"}
    root = Path(__file__).resolve().parents[2]
    ran = subprocess.run(
        [sys.executable, "-m", "cli", "datasets"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=60,
    )
    assert ran.returncode == 1 and "Sign in: set LOADBAY_CLIENT_ID" in ran.stderr
    ran = subprocess.run(
        [sys.executable, "-m", "cli", "--user", "nobody-yet", "datasets"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=60,
    )
    assert ran.returncode == 0 and ran.stdout == ""
