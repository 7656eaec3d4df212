"""The commands of `python -m cli`. Data goes to stdout (JSON, CSV or ids), progress and summaries to stderr.

Exit status: 0 done, 1 an error (the API's problem is printed), 2 a usage error, 3 an import waits for
its review (approve or reject it), 130 interrupted (the work goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from cli.client import Client, CliError, path_part, sign_in_headers

DEFAULT_API: Final = "http://127.0.0.1:7071/api"  # the devhost of `make run`
AWAITING_REVIEW: Final = 3
INTERRUPTED: Final = 130  # as shells report Ctrl-C
ENDS: Final = {"approve": "completed", "reject": "rejected", "cancel": "cancelled"}
MAX_PAGE_ROWS: Final = 1_000
Command = Callable[[Client, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    if getattr(options, "primary_key", None) and not options.infer_from:
        parser.error("--primary-key goes with --infer-from (a schema file names its own primary key)")
    try:
        client = Client(options.api, sign_in_headers(options.user))
        return int(options.command(client, options))
    except (CliError, OSError) as error:  # OSError: a local file to read or write (its message names it)
        if isinstance(error, BrokenPipeError):  # the reader went away (| head): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"loadbay: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("loadbay: interrupted; what was started goes on in Loadbay (see status).", file=sys.stderr)
        return INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli", description="Loadbay from the command line.")
    parser.add_argument("--api", default=os.environ.get("LOADBAY_API", DEFAULT_API), help="the API's URL")
    parser.add_argument("--user", default=os.environ.get("LOADBAY_USER"), help="devhost only: sign in as")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for work (3600)")
    commands = parser.add_subparsers(required=True, metavar="command")

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(command=run)
        return sub

    command("datasets", _datasets, "List your datasets (an admin's: everyone's).")
    create = command("create-dataset", _create_dataset, "Create a dataset; print its id.")
    create.add_argument("name")
    given = create.add_mutually_exclusive_group(required=True)
    given.add_argument("--schema", type=Path, help="a Table Schema JSON file")
    given.add_argument(
        "--infer-from", type=Path, metavar="CSV", help="a CSV file whose profile gives the schema"
    )
    create.add_argument("--primary-key", help="with --infer-from: the field to key rows by")
    command("show", _show, "Show a dataset as JSON.").add_argument("dataset")
    command("delete", _delete, "Delete a dataset with its rows, imports and errors.").add_argument("dataset")
    command(
        "upload", _upload, "Upload a CSV file and wait for its profile; print the upload id."
    ).add_argument("file", type=Path)
    start = command("import", _import, "Upload a CSV file into a dataset and wait for the import.")
    start.add_argument("dataset")
    start.add_argument("file", type=Path)
    start.add_argument("--mode", choices=("insert", "upsert", "replace"), default="insert")
    start.add_argument(
        "--map",
        action="append",
        type=_pair,
        default=[],
        metavar="FIELD=COLUMN",
        help="map a field (FIELD= to none)",
    )
    start.add_argument("--auto-apply", action="store_true", help="apply at once when no row is invalid")
    start.add_argument("--no-wait", action="store_true", help="print the import id and return")
    command("status", _status, "Show an import as JSON.").add_argument("import_id", metavar="import")
    for action in ("approve", "reject", "cancel"):
        decide = command(
            action, _decision(action), f"{action.capitalize()} an import, then wait for its end."
        )
        decide.add_argument("import_id", metavar="import")
        decide.add_argument("--no-wait", action="store_true")
    errors = command("errors", _errors, "Print an import's row errors (JSON lines, or --csv).")
    errors.add_argument("import_id", metavar="import")
    errors.add_argument("--csv", action="store_true", help="as errors.csv")
    browse = command("rows", _rows, "Print a dataset's rows as JSON lines.")
    browse.add_argument("dataset")
    browse.add_argument("--limit", type=_positive, help="at most this many rows")
    one = command("row", _row, "Print one row by its key (after --, a key may start with -).")
    one.add_argument("dataset")
    one.add_argument("key")
    export = command("export", _export, "Export a dataset to a CSV file.")
    export.add_argument("dataset")
    export.add_argument("-o", "--output", type=Path, help="the file to write (default: <dataset name>.csv)")
    export.add_argument("--unsafe-cells", action="store_true", help="no ' before formula-like text cells")
    return parser


def _datasets(client: Client, _options: argparse.Namespace) -> int:
    for dataset in client.pages("/datasets"):
        print(f"{dataset['id']}  {dataset['rowCount']:>10,} rows  {dataset['status']:<8}  {dataset['name']}")
    return 0


def _create_dataset(client: Client, options: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": options.name}
    if options.schema:
        body["schema"] = _json_file(options.schema)
    else:
        body["fromUpload"] = client.upload(options.infer_from, timeout=options.timeout)["id"]
        if options.primary_key:
            body["primaryKey"] = options.primary_key
    print(client.call("POST", "/datasets", json=body)["id"])
    return 0


def _show(client: Client, options: argparse.Namespace) -> int:
    _print_json(client.call("GET", f"/datasets/{path_part(options.dataset)}"))
    return 0


def _delete(client: Client, options: argparse.Namespace) -> int:
    client.call("DELETE", f"/datasets/{path_part(options.dataset)}")
    print(f"Deleting dataset {options.dataset}.", file=sys.stderr)
    return 0


def _upload(client: Client, options: argparse.Namespace) -> int:
    upload = client.upload(options.file, timeout=options.timeout)
    columns = ", ".join(f"{column['name']} ({column['type']})" for column in upload.get("columns") or [])
    print(f"{upload['rowCount']:,} rows: {columns}", file=sys.stderr)
    print(upload["id"])
    return 0


def _import(client: Client, options: argparse.Namespace) -> int:
    mapping = dict(options.map)
    dataset = client.call("GET", f"/datasets/{path_part(options.dataset)}")  # before a long upload
    if dataset.get("activeJob"):
        raise CliError(f"Dataset {dataset['id']} is busy with {dataset['activeJob']}; try when it ends.")
    upload = client.upload(options.file, timeout=options.timeout)
    body: dict[str, Any] = {"uploadId": upload["id"], "mode": options.mode, "autoApply": options.auto_apply}
    if mapping:
        body["mapping"] = mapping
    job = client.call("POST", f"/datasets/{path_part(options.dataset)}/imports", json=body)
    print(job["id"])
    if options.no_wait:
        return 0
    return _report(client.wait(f"/imports/{job['id']}", ("awaiting_review",), timeout=options.timeout))


def _status(client: Client, options: argparse.Namespace) -> int:
    _print_json(client.call("GET", f"/imports/{path_part(options.import_id)}"))
    return 0


def _decision(action: str) -> Command:
    def decide(client: Client, options: argparse.Namespace) -> int:
        path = f"/imports/{path_part(options.import_id)}"
        client.call("POST", f"{path}/{action}")
        if options.no_wait:
            return 0
        return _report(client.wait(path, (), timeout=options.timeout), ends=ENDS[action])

    return decide


def _errors(client: Client, options: argparse.Namespace) -> int:
    path = f"/imports/{path_part(options.import_id)}/errors"
    if options.csv:
        sys.stdout.flush()
        sys.stdout.buffer.write(client.fetch("GET", f"{path}.csv").content)
        return 0
    for error in client.pages(path):
        print(json.dumps(error, ensure_ascii=False))
    return 0


def _rows(client: Client, options: argparse.Namespace) -> int:
    limit = options.limit
    page = {"limit": min(limit, MAX_PAGE_ROWS)} if limit else {}
    for count, row in enumerate(
        client.pages(f"/datasets/{path_part(options.dataset)}/rows", **page), start=1
    ):
        print(json.dumps(row, ensure_ascii=False))
        if limit is not None and count >= limit:
            break
    return 0


def _row(client: Client, options: argparse.Namespace) -> int:
    _print_json(client.call("GET", f"/datasets/{path_part(options.dataset)}/rows/{path_part(options.key)}"))
    return 0


def _export(client: Client, options: argparse.Namespace) -> int:
    dataset = client.call("GET", f"/datasets/{path_part(options.dataset)}")
    target = options.output or Path(f"{_file_name(dataset['name'])}.csv")
    if not target.parent.is_dir():  # before the export runs
        raise CliError(f"There is no directory {target.parent} to write {target.name} in.")
    body = {"safeCells": not options.unsafe_cells}
    job = client.call("POST", f"/datasets/{path_part(options.dataset)}/exports", json=body)
    export = client.wait(f"/exports/{job['id']}", ("completed",), timeout=options.timeout)
    if export["status"] != "completed":
        raise CliError(f"The export {export['status']}: {export.get('error')}")
    size = client.download(export["downloadUrl"], target)
    print(f"{export['rows']:,} rows, {size:,} bytes: {target}", file=sys.stderr)
    return 0


def _report(job: dict[str, Any], *, ends: str = "completed") -> int:
    """Summarise an import on stderr; return the exit status its state calls for (0: it `ends` so)."""
    counts = job.get("counts") or {}
    print(
        f"Import {job['id']}: {job['status']}. "
        + ", ".join(
            f"{name} {counts[name]:,}"
            for name in ("rows", "valid", "invalid", "inserted", "updated", "unchanged")
            if name in counts
        ),
        file=sys.stderr,
    )
    for item in job.get("errorSummary") or []:
        print(f"  {item['count']:>8,}  {item['code']}  {item['column'] or '(row)'}", file=sys.stderr)
    if job.get("error"):
        print(f"  {job['error']}", file=sys.stderr)
    if job["status"] == "awaiting_review":
        print(f"Review it: python -m cli errors {job['id']}, then approve or reject.", file=sys.stderr)
        return AWAITING_REVIEW
    return 0 if job["status"] == ends else 1


def _pair(text: str) -> tuple[str, str | None]:
    field, sep, column = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"FIELD=COLUMN (or FIELD= for no column), not {text!r}")
    return field, column or None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise CliError(f"Could not read {path} as JSON: {error}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _file_name(name: str) -> str:
    kept = "".join(character if character.isalnum() or character in "-_." else "_" for character in name)
    return kept.strip("._") or "export"
