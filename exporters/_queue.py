"""A durable outbox for alerts: SQLite in WAL mode, one row per (target, alert).

* ``put`` upserts: a newer state of the same alert (same fingerprint) for the
  same target replaces the queued one, so an outage never grows the queue
  beyond (alerts x targets) and the latest state (firing -> resolved) wins.
* ``due`` returns rows whose backoff has expired; ``ack`` deletes them only if
  they were not replaced since they were read (``version``), so a state
  queued while a send was in flight is never lost.
* ``dead`` moves a row to the ``dead_letter`` table (rejected by the receiver,
  never retried).
* ``active`` keeps the firing alerts, re-sent periodically until resolved and
  restored after a restart.

Rows survive crashes: every change is a committed transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    UNIQUE (target, fingerprint)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (target, next_attempt);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload TEXT NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS active (
    fingerprint TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    id: int
    target: str
    fingerprint: str
    payload: dict[str, Any]
    version: int
    attempts: int


class DurableQueue:
    """Thread-safe; one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: str | Path, *, max_rows: int = 10_000) -> None:
        """``max_rows`` bounds the outbox (oldest rows evicted; checked every ``max_rows // 8`` puts, at most 256,
        so it may exceed the bound by that many rows)."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._puts = 0
        self._check_every = max(1, min(256, max_rows // 8))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ outbox
    def put(self, target: str, fingerprint: str, payload: dict[str, Any]) -> int:
        """Queue (or replace) ``payload`` for ``target``; returns how many old rows were evicted to stay bounded."""
        body = json.dumps(payload, sort_keys=True)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (target, fingerprint, payload, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (target, fingerprint) DO UPDATE SET payload = excluded.payload, "
                "version = outbox.version + 1",
                (target, fingerprint, body, now),
            )
            self._puts += 1
            if self._puts % self._check_every and self._puts > 1:  # COUNT(*) scans: check the bound now and then
                return 0
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            evicted = 0
            if n > self.max_rows:
                evicted = n - self.max_rows
                self._db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                                 (evicted,))
            return evicted

    def due(self, target: str, *, now: float | None = None, limit: int = 64) -> list[Row]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, target, fingerprint, payload, version, attempts FROM outbox "
                "WHERE target = ? AND next_attempt <= ? ORDER BY id LIMIT ?",
                (target, now, limit),
            ).fetchall()
        return [Row(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def next_due(self, target: str) -> float | None:
        with self._lock:
            (t,) = self._db.execute("SELECT MIN(next_attempt) FROM outbox WHERE target = ?", (target,)).fetchone()
        return t

    def ack(self, rows: list[Row]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ? AND version = ?", [(r.id, r.version) for r in rows])

    def retry(self, rows: list[Row], next_attempt: float) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ? WHERE id = ?",
                [(next_attempt, r.id) for r in rows],
            )

    def dead(self, row: Row, status: int | None, error: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO dead_letter (target, fingerprint, payload, status, error, created) VALUES (?,?,?,?,?,?)",
                (row.target, row.fingerprint, json.dumps(row.payload, sort_keys=True), status, error[:2000],
                 time.time()),
            )
            self._db.execute("DELETE FROM outbox WHERE id = ? AND version = ?", (row.id, row.version))
            self._db.execute("COMMIT")

    def size(self, target: str | None = None) -> int:
        with self._lock:
            if target is None:
                return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE target = ?", (target,)).fetchone()[0]

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT target, fingerprint, payload, status, error, created FROM dead_letter ORDER BY id").fetchall()
        return [{"target": r[0], "fingerprint": r[1], "payload": json.loads(r[2]), "status": r[3], "error": r[4],
                 "created": r[5]} for r in rows]

    # ------------------------------------------------------------------ active
    def set_active(self, fingerprint: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO active (fingerprint, payload, updated) VALUES (?, ?, ?)",
                             (fingerprint, json.dumps(payload, sort_keys=True), time.time()))

    def clear_active(self, fingerprint: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM active WHERE fingerprint = ?", (fingerprint,))

    def get_active(self, fingerprint: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM active WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return json.loads(row[0]) if row else None

    def active(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT fingerprint, payload FROM active").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
