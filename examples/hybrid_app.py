"""A hybrid app: HTML pages with sessions, ``/api/*`` with tokens, in one FastAPI app.

Run it (from the repository root):

    .venv/bin/uvicorn examples.hybrid_app:app --port 8002

Browsers sign in at ``/login`` (authgate's page) and land on ``/``; API clients get a
token from ``POST /auth/token`` and call ``/api/notes`` with ``Authorization: Bearer``.
``GET /api/notes`` takes any signed-in token; ``POST /api/notes`` needs the ``notes:write``
scope, which a role of the same name grants. Create such a user (same database):

    AUTHGATE_DATABASE_URL=sqlite:///hybrid_app.db \
        .venv/bin/authgate users create hana --role notes:write

Another port: set ``AUTHGATE_PUBLIC_URL=http://127.0.0.1:PORT`` too (the login form and the
Origin check follow it).
"""

from __future__ import annotations

import html
import os

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from authgate import AuthGate, AuthGateError, Principal, Settings

gate = AuthGate(Settings(
    database_url=os.environ.get("AUTHGATE_DATABASE_URL", "sqlite:///hybrid_app.db"),
    public_url=os.environ.get("AUTHGATE_PUBLIC_URL", "http://127.0.0.1:8002"),
))
app = FastAPI(title="hybrid app", lifespan=gate.lifespan)
app.include_router(gate.router)            # /auth/* for both kinds of client
app.router.routes.extend(gate.pages)       # /login and /account

NOTES: dict[str, list[str]] = {}


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    """An HTML page: signed-in users see their notes; others go to the login page."""
    try:
        user = await gate.authenticate(request, via="session")
    except AuthGateError:
        return RedirectResponse("/login?next=/", status_code=303)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in NOTES.get(user.id, []))
    return HTMLResponse(f"<h1>Notes of {html.escape(user.username)}</h1><ul>{items}</ul>"
                        '<p><a href="/account">Account</a></p>')


@app.get("/api/notes")
async def list_notes(user: Principal = Depends(gate.token_user)) -> list[str]:
    """API: bearer token only."""
    return NOTES.get(user.id, [])


@app.post("/api/notes", status_code=201)
async def add_note(note: dict[str, str],
                   user: Principal = Depends(gate.user(scopes=["notes:write"], via="token"))
                   ) -> list[str]:
    """API: bearer token with the ``notes:write`` scope."""
    NOTES.setdefault(user.id, []).append(note.get("text", "")[:500])
    return NOTES[user.id]
