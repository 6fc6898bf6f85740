"""The FastAPI peers of ingest, for bench/run's `peers` part.

The two designs a team would otherwise build from the seed's FastAPI service,
each doing what ingest does per webhook: the same key check (an argon2id hash
from `api_keys`, verified once per key and cached in-process by the key's
SHA-256), the same validation (a pydantic model of the contract in
/work/shared/seed/deployment-webhooks.md, with ingest's field rules from
schemas/src/fields.rs), and the environment resolved through a short cache.
PEER_MODE picks what happens next:

- `kafka`: an aiokafka producer with acks=all and idempotence; the record's
  key is the environment, as ingest keys it, and the 201 waits for the
  broker's acknowledgement (send_and_wait).
- `postgres`: one INSERT per webhook through an asyncpg pool into
  `peer_deployments` (bench/peers/schema.sql), the seed's own design; the 201
  waits for the commit.

Run under uvicorn with one worker per core (bench/src/peers.rs does).
Settings, all from the environment: PEER_MODE, DATABASE_URL (keys,
environments and, for `postgres`, the table), KAFKA_BROKERS, KAFKA_TOPIC,
PEER_PG_POOL (connections per worker for the inserts, default 16),
PEER_KAFKA_LINGER_MS (default 2, ingest's).
"""

import asyncio
import hashlib
import os
import re
import time
import unicodedata
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional

import asyncpg
import orjson

# orjson writes datetimes and uuid.UUID itself; asyncpg returns its own UUID
# type, which `default=str` writes as text.
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, field_validator

MODE = os.environ.get("PEER_MODE", "kafka")
DATABASE_URL = os.environ["DATABASE_URL"]
# How long a verified key is trusted without asking Postgres again (ingest: 60 s).
KEY_TTL_S = 60.0
# How long an environment lookup is cached (ingest: 5 s).
ENV_TTL_S = 5.0

# ---- validation: the contract's body, with ingest's rules -----------------

ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
SHA_RE = re.compile(r"^[0-9a-fA-F]{40}$")
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def visible(value: str, what: str) -> str:
    """Refuses control, format and private-use characters (Cc, Cf, Co)."""
    for c in value:
        if unicodedata.category(c) in ("Cc", "Cf", "Co"):
            raise ValueError(f"{what} must not contain U+{ord(c):04X}")
    return value


def bounded(value: str, most: int, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > most:
        raise ValueError(f"{what} must be at most {most} characters")
    return value


def no_nul(value: Any, depth: int = 1) -> None:
    if depth > 16:
        raise ValueError("extra_data must not nest deeper than 16 levels")
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("extra_data must not contain NUL characters")
    elif isinstance(value, list):
        for item in value:
            no_nul(item, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            no_nul(k, depth)
            no_nul(v, depth + 1)


class Status(str, Enum):
    pending = "pending"
    in_progress = "in_progress"
    success = "success"
    failed = "failed"
    cancelled = "cancelled"


class Source(str, Enum):
    webhook = "webhook"
    github_actions = "github_actions"
    argocd = "argocd"
    jenkins = "jenkins"


class DeploymentWebhook(BaseModel):
    environment: str
    repository: str
    branch: Optional[str] = None
    commit_sha: Optional[str] = None
    status: Status = Status.success
    source: Source = Source.webhook
    deployed_at: Optional[datetime] = None
    extra_data: Optional[dict[str, Any]] = None
    external_id: Optional[str] = None

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: str) -> str:
        if not ENV_RE.match(v):
            raise ValueError(f"environment {v!r} is not a valid name")
        return v

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str) -> str:
        bounded(v, 255, "repository")
        segments = v.split("/")
        if len(segments) < 2 or not all(
            SEGMENT_RE.match(s) and s not in (".", "..") for s in segments
        ):
            raise ValueError(f"repository {v!r} must be a full name such as owner/repo")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        bounded(visible(v, "branch"), 255, "branch")
        if any(c.isspace() for c in v):
            raise ValueError("branch must not contain whitespace")
        return v

    @field_validator("commit_sha")
    @classmethod
    def _commit_sha(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if not SHA_RE.match(v):
            raise ValueError("commit_sha must be a full SHA of 40 hex characters")
        return v.lower()

    @field_validator("deployed_at")
    @classmethod
    def _deployed_at(cls, v: Optional[datetime]) -> Optional[datetime]:
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        if v < EARLIEST:
            raise ValueError("deployed_at is before 1970-01-01T00:00:00Z")
        return v

    @field_validator("extra_data")
    @classmethod
    def _extra_data(cls, v: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        if v is not None:
            no_nul(v)
        return v

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        return bounded(visible(v, "external_id"), 255, "external_id")


# ---- the key check: argon2id once per key, then a cache by SHA-256 --------

KEY_RE = re.compile(r"^vmk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
hasher = PasswordHasher()
# A hash nobody's key matches, so an unknown lookup costs a verification too.
DUMMY_HASH = hasher.hash(os.urandom(32).hex())


class State:
    pool: asyncpg.Pool
    producer: Any = None
    keys: dict[bytes, tuple[uuid.UUID, float]] = {}
    verifying: dict[bytes, asyncio.Future] = {}
    environments: dict[tuple[uuid.UUID, str], tuple[Optional[uuid.UUID], float]] = {}


state = State()


def argon2_ok(phc: str, secret: str) -> bool:
    try:
        return hasher.verify(phc, secret)
    except Argon2Error:
        return False


async def verify_key(lookup: str, secret: str) -> Optional[uuid.UUID]:
    row = await state.pool.fetchrow(
        "SELECT workspace_id, hash, revoked_at FROM api_keys WHERE prefix = $1", lookup
    )
    phc = row["hash"] if row else DUMMY_HASH
    ok = await asyncio.get_running_loop().run_in_executor(None, argon2_ok, phc, secret)
    if ok and row is not None and row["revoked_at"] is None:
        return row["workspace_id"]
    return None


async def workspace(x_workspace_key: Optional[str] = Header(default=None)) -> uuid.UUID:
    """The key's workspace, or 401: verified once, then cached for KEY_TTL_S."""
    if x_workspace_key is None:
        raise HTTPException(401, "Invalid API key")
    digest = hashlib.sha256(x_workspace_key.encode()).digest()
    hit = state.keys.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    m = KEY_RE.match(x_workspace_key)
    if m is None:
        raise HTTPException(401, "Invalid API key")
    # Concurrent misses for one key share one verification.
    pending = state.verifying.get(digest)
    if pending is None:
        pending = asyncio.ensure_future(verify_key(m.group(1), m.group(2)))
        state.verifying[digest] = pending
        pending.add_done_callback(lambda _: state.verifying.pop(digest, None))
    workspace_id = await asyncio.shield(pending)
    if workspace_id is None:
        raise HTTPException(401, "Invalid API key")
    state.keys[digest] = (workspace_id, time.monotonic() + KEY_TTL_S)
    return workspace_id


async def environment_id(workspace_id: uuid.UUID, name: str) -> uuid.UUID:
    key = (workspace_id, name)
    hit = state.environments.get(key)
    if hit is None or hit[1] <= time.monotonic():
        found = await state.pool.fetchval(
            "SELECT id FROM environments WHERE workspace_id = $1 AND name = $2",
            workspace_id,
            name,
        )
        hit = (found, time.monotonic() + ENV_TTL_S)
        state.environments[key] = hit
    if hit[0] is None:
        raise HTTPException(404, f"Environment {name!r} not found")
    return hit[0]


# ---- the app ---------------------------------------------------------------


@asynccontextmanager
async def lifespan(_: FastAPI):
    size = int(os.environ.get("PEER_PG_POOL", "16")) if MODE == "postgres" else 2
    state.pool = await asyncpg.create_pool(DATABASE_URL, min_size=size, max_size=size)
    if MODE == "kafka":
        from aiokafka import AIOKafkaProducer

        state.producer = AIOKafkaProducer(
            bootstrap_servers=os.environ["KAFKA_BROKERS"],
            acks="all",
            enable_idempotence=True,
            linger_ms=int(os.environ.get("PEER_KAFKA_LINGER_MS", "2")),
        )
        await state.producer.start()
    yield
    if state.producer is not None:
        await state.producer.stop()
    await state.pool.close()


app = FastAPI(lifespan=lifespan)
TOPIC = os.environ.get("KAFKA_TOPIC", "deployments")


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/deployments/webhook", status_code=201)
async def webhook(
    body: DeploymentWebhook, workspace_id: uuid.UUID = Depends(workspace)
) -> Response:
    env_id = await environment_id(workspace_id, body.environment)
    now = datetime.now(timezone.utc)
    deployed_at = body.deployed_at or now
    deployment_id = uuid.uuid4()
    record = {
        "deployment_id": deployment_id,
        "workspace_id": workspace_id,
        "environment_id": env_id,
        "environment": body.environment,
        "repository": body.repository,
        "branch": body.branch,
        "commit_sha": body.commit_sha,
        "status": body.status.value,
        "source": body.source.value,
        "deployed_at": deployed_at,
        "extra_data": body.extra_data or {},
        "external_id": body.external_id,
        "received_at": now,
    }
    if MODE == "kafka":
        await state.producer.send_and_wait(
            TOPIC, orjson.dumps(record, default=str), key=body.environment.encode()
        )
    else:
        await state.pool.execute(
            "INSERT INTO peer_deployments (id, workspace_id, environment_id, environment,"
            " repo_full_name, branch, commit_sha, status, source, deployed_at, extra_data,"
            " external_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13)",
            deployment_id,
            workspace_id,
            env_id,
            body.environment,
            body.repository,
            body.branch,
            body.commit_sha,
            record["status"],
            record["source"],
            deployed_at,
            orjson.dumps(record["extra_data"]).decode(),
            body.external_id,
            now,
        )
    answer = {
        "id": deployment_id,
        "environment_id": env_id,
        "repo_full_name": body.repository,
        "branch": body.branch,
        "commit_sha": body.commit_sha,
        "status": record["status"],
        "source": record["source"],
        "deployed_at": deployed_at,
        "created_at": now,
    }
    return Response(orjson.dumps(answer, default=str), status_code=201, media_type="application/json")
