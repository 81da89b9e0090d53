"""The seed article's Express app, rewritten with authgate.

The article wires express-session for pages and jsonwebtoken for the API by hand. Here:

    article (Express)                          authgate (FastAPI)
    app.post('/login')  + req.session          POST /auth/login       (gate.router)
    app.get('/home')    checks req.session     GET  /home             Depends(gate.session_user)
    app.get('/logout')  session.destroy()      POST /auth/logout      (gate.router, CSRF-checked)
    app.post('/jwt-login') jwt.sign(...)       POST /auth/token       (gate.router, + refresh)
    verifyToken middleware                     Depends(gate.token_user)
    app.get('/dashboard', verifyToken)         GET  /dashboard
    "JWTs can carry custom claims"             AuthGate(..., extra_claims=...)

Run it (from the repository root):

    .venv/bin/uvicorn examples.seed_app:app --port 8001

then create a user with ``AUTHGATE_DATABASE_URL=sqlite:///seed_app.db authgate users create
alice`` (or ``POST /auth/register``).
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI

from authgate import AuthGate, Principal, Settings, User

settings = Settings(
    database_url=os.environ.get("AUTHGATE_DATABASE_URL", "sqlite:///seed_app.db"),
    public_url=os.environ.get("AUTHGATE_PUBLIC_URL", "http://127.0.0.1:8001"),
)


def custom_claims(user: User) -> dict[str, object]:
    """Added to every access token (registered names are refused at start-up)."""
    return {"preferred_username": user.username}


gate = AuthGate(settings, extra_claims=custom_claims)
app = FastAPI(title="seed app, done right", lifespan=gate.lifespan)
app.include_router(gate.router)


@app.get("/home")
async def home(user: Principal = Depends(gate.session_user)) -> dict[str, str]:
    """A web page's data: the session cookie only (a bearer token is not enough)."""
    return {"message": f"Welcome home, {user.username}!"}


@app.get("/dashboard")
async def dashboard(user: Principal = Depends(gate.token_user)) -> dict[str, object]:
    """An API: a bearer token only (the session cookie alone gets 401)."""
    claims = user.claims or {}
    return {"message": f"Dashboard of {user.username}", "user_id": user.id,
            "preferred_username": claims.get("preferred_username")}


@app.get("/reports")
async def reports(user: Principal = Depends(gate.user(scopes=["reports:read"]))
                  ) -> dict[str, object]:
    """Either credential, but it must carry the ``reports:read`` scope (403 otherwise)."""
    return {"reports": [], "for": user.username, "via": user.auth}
