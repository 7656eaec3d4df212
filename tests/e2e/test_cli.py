"""The command-line client (python -m cli) against a real devhost: every command, exit statuses, problems."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import client
from cli.main import AWAITING_REVIEW, INTERRUPTED, main
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
        try:
            status = main([*self.options, *argv])
        except SystemExit as usage:  # argparse
            status = int(usage.code or 0)
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
    assert status == 1 and "404" in err  # found out before any upload
    status, _, err = cli("import", "x", str(bad), "--map", "nocolumn")
    assert status == 2 and "FIELD=COLUMN" in err  # a usage error
    status, _, err = cli("create-dataset", "x", "--schema", str(bad), "--primary-key", "a")
    assert status == 2 and "--primary-key goes with --infer-from" in err
    status, _, err = cli("rows", "x", "--limit", "0")
    assert status == 2


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


def test_big_files_go_up_in_blocks_and_decisions_exit_0_when_they_end_as_asked(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    dataset = cli("create-dataset", "blocks", "--schema", str(schema))[1].strip()
    data = tmp_path / "big.csv"
    data.write_text(
        "id,name,score\n" + "".join(f"{n},Name {n},{n % 7}\n" for n in range(1, 3001)) + "3001,,1\n"
    )
    monkeypatch.setattr(client, "BLOCK_BYTES", 4096)  # about 12 blocks
    status, out, err = cli("import", dataset, str(data))
    assert status == AWAITING_REVIEW and "rows 3,001, valid 3,000, invalid 1" in err
    status, _, err = cli("reject", out.strip())
    assert status == 0 and "rejected" in err
    status, out, _ = cli("import", dataset, str(data), "--no-wait")
    assert status == 0
    cli("status", out.strip())
    status, _, err = cli("cancel", out.strip())
    assert status == 0 and "cancelled" in err


def test_keys_of_dots_a_missing_directory_and_an_interrupted_wait(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps({"fields": [{"name": "code", "type": "string"}, {"name": "n"}], "primaryKey": "code"})
    )
    dataset = cli("create-dataset", "dots", "--schema", str(schema))[1].strip()
    data = tmp_path / "dots.csv"
    data.write_text("code,n\n..,1\n.,2\n-x,3\n")
    status, _, err = cli("import", dataset, str(data), "--auto-apply", "--map", "n=")  # n stays empty
    assert status == 0 and "inserted 3" in err
    assert json.loads(cli("row", dataset, "..")[1]) == {"key": "..", "values": {"code": "..", "n": None}}
    assert json.loads(cli("row", dataset, ".")[1])["key"] == "."
    assert json.loads(cli("row", dataset, "--", "-x")[1])["key"] == "-x"

    status, _, err = cli("import", dataset, str(tmp_path / "missing.csv"))
    assert status == 1 and "missing.csv" in err
    status, _, err = cli("export", dataset, "-o", str(tmp_path / "nowhere" / "out.csv"))
    assert status == 1 and "There is no directory" in err

    def interrupted(*_args: object, **_options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(client.Client, "wait", interrupted)
    status, _, err = cli("export", dataset, "-o", str(tmp_path / "out.csv"))
    assert status == INTERRUPTED and "interrupted" in err and not (tmp_path / "out.csv").exists()
