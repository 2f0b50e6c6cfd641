"""A faithful replica of the original PixSim7 backend's game routes, kept for the
benchmark only (`cargo xtask bench`), so that our numbers are compared with the original
stack on the same machine in the same run.

What the original was: FastAPI served by uvicorn with one worker, synchronous `def`
handlers (FastAPI runs them on its thread pool), Python's `sqlite3` on a database in WAL
mode, game sessions in one table whose `flags` and `relationships` are JSON text, and a
signed-in user (an HS256 bearer token) on every game route; another user's session answers
404. The routes behave as the original did, which the game plugins reproduce.

Run: PIXSIM7_REPLICA_DB=path.db PIXSIM7_JWT_SECRET=... uvicorn app:app --workers 1
"""

import json
import os
import random
import sqlite3
import threading
import time

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

DATABASE = os.environ.get("PIXSIM7_REPLICA_DB", "replica.db")
SECRET = os.environ["PIXSIM7_JWT_SECRET"]

app = FastAPI(title="PixSim7 (original, replica)")
_local = threading.local()


def connection() -> sqlite3.Connection:
    """One connection per thread of the pool, as the original's session factory did."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DATABASE, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _local.conn = conn
    return conn


def init_schema() -> None:
    connection().executescript(
        """
        CREATE TABLE IF NOT EXISTS game_sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER,
            world_id INTEGER,
            scene_id INTEGER,
            current_node_id INTEGER,
            flags TEXT NOT NULL DEFAULT '{}',
            relationships TEXT NOT NULL DEFAULT '{}',
            world_time REAL NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 1,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        """
    )


init_schema()


def current_user(authorization: str = Header(default="")) -> int:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=401, detail="Not authenticated")
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="Could not validate credentials")
    return int(claims["sub"])


def session_json(row) -> dict:
    return {
        "id": row[0],
        "user_id": row[1],
        "world_id": row[2],
        "scene_id": row[3],
        "current_node_id": row[4],
        "flags": json.loads(row[5]),
        "relationships": json.loads(row[6]),
        "world_time": row[7],
        "version": row[8],
    }


COLUMNS = "id, user_id, world_id, scene_id, current_node_id, flags, relationships, world_time, version"


class NewSession(BaseModel):
    world_id: int | None = None
    scene_id: int | None = None
    flags: dict | None = None
    relationships: dict | None = None


@app.post("/api/v1/game/sessions")
def create_session(body: NewSession, user_id: int = Depends(current_user)):
    now = int(time.time())
    conn = connection()
    cursor = conn.execute(
        "INSERT INTO game_sessions (user_id, world_id, scene_id, flags, relationships, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            user_id,
            body.world_id,
            body.scene_id,
            json.dumps(body.flags or {}),
            json.dumps(body.relationships or {}),
            now,
            now,
        ),
    )
    row = conn.execute(
        f"SELECT {COLUMNS} FROM game_sessions WHERE id = ?", (cursor.lastrowid,)
    ).fetchone()
    return session_json(row)


@app.get("/api/v1/game/sessions/{session_id}")
def get_session(session_id: int, user_id: int = Depends(current_user)):
    row = connection().execute(
        f"SELECT {COLUMNS} FROM game_sessions WHERE id = ? AND user_id = ?",
        (session_id, user_id),
    ).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"GameSession {session_id} not found")
    return session_json(row)


class PickpocketRequest(BaseModel):
    npc_id: int
    slot_id: str
    base_success_chance: float
    detection_chance: float
    session_id: int
    world_id: int | None = None


@app.post("/api/v1/game/stealth/pickpocket")
def pickpocket(body: PickpocketRequest, user_id: int = Depends(current_user)):
    if not 0.0 <= body.base_success_chance <= 1.0:
        raise HTTPException(status_code=400, detail="base_success_chance must be between 0 and 1")
    if not 0.0 <= body.detection_chance <= 1.0:
        raise HTTPException(status_code=400, detail="detection_chance must be between 0 and 1")
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT flags, relationships FROM game_sessions WHERE id = ? AND user_id = ?",
            (body.session_id, user_id),
        ).fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail=f"GameSession {body.session_id} not found")
        flags, relationships = json.loads(row[0]), json.loads(row[1])
        success = random.random() < body.base_success_chance
        detected = random.random() < body.detection_chance
        stealth = flags.setdefault("stealth", {})
        stealth.setdefault("pickpocket_attempts", []).append(
            {"npc_id": body.npc_id, "slot_id": body.slot_id, "success": success, "detected": detected}
        )
        if success:
            stealth[f"stole_from_npc_{body.npc_id}"] = True
            message = f"You successfully pickpocketed NPC #{body.npc_id}!"
        else:
            message = f"Pickpocket attempt on NPC #{body.npc_id} failed."
        if detected:
            stealth[f"caught_by_npc_{body.npc_id}"] = True
            message += " You were detected!"
            entry = relationships.setdefault(f"npc:{body.npc_id}", {})
            entry.setdefault("flags", {})["caught_pickpocketing"] = True
            if isinstance(entry.get("score"), (int, float)):
                entry["score"] = max(0, entry["score"] - 10)
        conn.execute(
            "UPDATE game_sessions SET flags = ?, relationships = ?, version = version + 1, updated_at = ? "
            "WHERE id = ?",
            (json.dumps(flags), json.dumps(relationships), int(time.time()), body.session_id),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"success": success, "detected": detected, "updated_flags": flags, "message": message}
