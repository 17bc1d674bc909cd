"""``fedmarket ledger verify/show/prove`` on hostile files: one line, exit 3 naming the
first bad entry (or 4 when there is no ledger), never a traceback; odd run-directory
names and read-only media work."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace import Market, audit_ledger
from simulation.cli.market import ledger_app
from tests.fsfaults import remount_read_only, tmpfs
from tests.keyring import KEYRING
from tests.marketplace.conftest import populate

runner = CliRunner()
COMMANDS = (["verify"], ["show"], ["prove", "--", "1"])


def _ledger(run: Path) -> Path:
    m = Market.create(run, seed=3, genesis={"scenario_hash": "hostile"}, keyring=KEYRING)
    populate(m)
    m.close()
    return run


def _set_record(run: Path, seq: int, record: object) -> None:
    conn = sqlite3.connect(run / "ledger.db")
    conn.execute("UPDATE entries SET record = ? WHERE seq = ?", (record, seq))
    conn.commit()
    conn.close()


def _record(run: Path, seq: int) -> str:
    conn = sqlite3.connect(run / "ledger.db")
    (record,) = conn.execute("SELECT record FROM entries WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return str(record)


def _invoke(args: list[str], run: Path) -> tuple[int, list[str]]:
    cmd, *rest = args
    result = runner.invoke(ledger_app, [cmd, str(run), *rest])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def _nested(run: Path) -> None:
    _set_record(run, 4, '{"data":' + "[" * 100_000 + "]" * 100_000 + "}")


def _huge_seq(run: Path) -> None:
    _set_record(run, 4, _record(run, 4).replace('"seq":4', '"seq":1e999'))


def _huge_int(run: Path) -> None:
    _set_record(run, 4, _record(run, 4).replace('"seq":4', '"seq":' + "9" * 5000))


def _blob(run: Path) -> None:
    _set_record(run, 4, _record(run, 4).encode())


def _not_json(run: Path) -> None:
    _set_record(run, 4, "{not json")


def _bad_amount(run: Path) -> None:
    record = _record(run, 8)  # a mint: its amount becomes a list
    assert '"amount":' in record
    _set_record(run, 8, record.replace('"amount":', '"amount":[1],"x":', 1))


MUTATIONS: dict[str, tuple[Callable[[Path], None], int]] = {
    "nested-100000-deep": (_nested, 4),
    "seq-1e999": (_huge_seq, 4),
    "seq-5000-digits": (_huge_int, 4),
    "record-as-blob": (_blob, 4),
    "record-not-json": (_not_json, 4),
    "amount-a-list": (_bad_amount, 8),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_record_is_named_by_every_command(tmp_path: Path, name: str) -> None:
    mutate, seq = MUTATIONS[name]
    run = _ledger(tmp_path / "run")
    mutate(run)
    for args in COMMANDS:
        code, lines = _invoke(args, run)
        assert code == 3, (args, lines)
        assert len(lines) == 1 and f"entry #{seq}" in lines[0], (args, lines)


def test_non_integer_head_seq_fails_verification_not_usage(tmp_path: Path) -> None:
    run = _ledger(tmp_path / "run")
    conn = sqlite3.connect(run / "ledger.db")
    conn.execute("UPDATE head SET seq = 'abc'")
    conn.commit()
    conn.close()
    code, lines = _invoke(["verify"], run)
    assert code == 3 and len(lines) == 1 and "head" in lines[0], lines


def _corrupt_page(db: Path) -> None:
    size = db.stat().st_size
    assert size >= 3 * 16384, "the test needs a ledger of several pages"
    with db.open("r+b") as f:  # leave the header page, smash every page after it
        f.seek(16384)
        f.write(b"\xa5" * (size - 16384))


@pytest.mark.parametrize(
    "damage",
    ["corrupt-pages", "garbage-file", "empty-file", "truncated-header"],
)
def test_damaged_database_file(tmp_path: Path, damage: str) -> None:
    run = tmp_path / "run"
    m = Market.create(run, seed=3, genesis={"scenario_hash": "hostile"}, keyring=KEYRING)
    with m.batch():
        for i in range(300):  # several 16 KiB pages of entries
            m.record("round_started", {"round": i, "pad": "x" * 200})
    m.close()
    db = run / "ledger.db"
    if damage == "corrupt-pages":
        _corrupt_page(db)
    elif damage == "garbage-file":
        db.write_bytes(os.urandom(70_000))
    elif damage == "empty-file":
        db.write_bytes(b"")
    else:
        db.write_bytes(db.read_bytes()[:50])
    for args in COMMANDS:
        code, lines = _invoke(args, run)
        assert code == 3, (args, lines)
        assert len(lines) == 1 and "entry #" in lines[0], (args, lines)


def test_a_directory_named_ledger_db_is_no_ledger(tmp_path: Path) -> None:
    (tmp_path / "run" / "ledger.db").mkdir(parents=True)
    for args in COMMANDS:
        code, lines = _invoke(args, tmp_path / "run")
        assert code == 4 and len(lines) == 1 and "no ledger" in lines[0]


@pytest.mark.parametrize("name", ["run#1", "run?x", "run%41", "a b#?%"])
def test_run_directories_with_uri_characters_verify(tmp_path: Path, name: str) -> None:
    run = _ledger(tmp_path / name)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args in COMMANDS:
        code, lines = _invoke(args, run)
        assert code == 0, (args, lines)
    assert audit_ledger(run).entries > 10
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "a stray file was created"


def test_a_closed_ledger_leaves_wal_mode(tmp_path: Path) -> None:
    run = _ledger(tmp_path / "run")
    assert not (run / "ledger.db-wal").exists() and not (run / "ledger.db-shm").exists()
    conn = sqlite3.connect(f"file:{run / 'ledger.db'}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    m = Market.open(run, readonly=False, keyring=KEYRING)  # a writer re-enters WAL while it is open
    assert m._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    m.close()


def test_finished_ledger_verifies_from_read_only_media(tmp_path: Path) -> None:
    run = _ledger(tmp_path / "run")
    with tmpfs(tmp_path / "media") as media:
        shutil.copy(run / "ledger.db", media / "ledger.db")
        remount_read_only(media)
        with pytest.raises(OSError):
            (media / "probe").write_text("x")  # the medium really is read-only
        assert audit_ledger(media).entries > 10
        code, lines = _invoke(["verify"], media)
        assert code == 0, lines
        assert sorted(p.name for p in media.iterdir()) == ["ledger.db"]
