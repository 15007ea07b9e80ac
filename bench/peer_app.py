"""The peer of ``bench.fastapi_peer``: the posts feature as a Python user would write it without petrock.

FastAPI with SQLAlchemy 2, written the way FastAPI's SQL tutorial writes it: pydantic
models for what comes in and what goes out, one table model, sync ``def`` endpoints (run
in FastAPI's thread pool), a ``Session`` per request from a dependency, and an SQLite file
(here in WAL mode with ``synchronous=NORMAL``, the generated app's own settings). It has the
generated posts feature's fields, limits and list order (newest first), and no summary
worker. ``python -m bench.peer_app PORT DB [fast|plain]`` serves it exactly as
``bench/http_server.py`` serves the bare baseline. (No ``from __future__ import annotations``:
FastAPI reads the endpoints' annotations, which name ``SessionDep``, local to :func:`create_app`.)
"""

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, Text, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.http_server import run


class Base(DeclarativeBase):
    pass


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: uuid4().hex)
    title: Mapped[str] = mapped_column(String(200), index=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40), index=True)
    updated_at: Mapped[str] = mapped_column(String(40), index=True)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    summary_status: Mapped[str] = mapped_column(String(10), default="pending")
    summary_error: Mapped[str | None] = mapped_column(Text, default=None)
    summary_request_id: Mapped[str | None] = mapped_column(String(64), default=None)


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=100_000)


class PostPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    content: str
    created_at: str
    updated_at: str
    summary: str | None
    summary_status: str
    summary_error: str | None
    summary_request_id: str | None


def create_app(db_path: str) -> FastAPI:
    engine = create_engine(f"sqlite:///{db_path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def wal(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    Base.metadata.create_all(engine)

    def get_session() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    SessionDep = Annotated[Session, Depends(get_session)]
    app = FastAPI()

    @app.post("/posts/", response_model=PostPublic, status_code=201)
    def create_post(post: PostCreate, session: SessionDep) -> Post:
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        db_post = Post(**post.model_dump(), created_at=now, updated_at=now)
        session.add(db_post)
        session.commit()
        session.refresh(db_post)
        return db_post

    @app.get("/posts/", response_model=list[PostPublic])
    def read_posts(
        session: SessionDep, offset: int = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[Post]:
        return list(session.scalars(select(Post).order_by(Post.created_at.desc()).offset(offset).limit(limit)))

    @app.get("/posts/{post_id}", response_model=PostPublic)
    def read_post(post_id: str, session: SessionDep) -> Post:
        post = session.get(Post, post_id)
        if post is None:
            raise HTTPException(status_code=404, detail="Post not found")
        return post

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    port, db, stack = [*sys.argv[1:4], "fast"][:3]
    run(create_app(db), int(port), stack)
