"""A user's app, written the way contract section 6 shows: mypy --strict must pass on it."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.applications import Starlette

from authgate import AuthGate, AuthGateMiddleware, Principal, Settings, User


async def claims(user: User) -> dict[str, object]:
    return {"tenant": "acme", "name": user.username}


gate = AuthGate(Settings(database_url="sqlite:///app.db"), extra_claims=claims)
app = FastAPI(lifespan=gate.lifespan)
app.include_router(gate.router)


@app.get("/home")
async def home(user: Principal = Depends(gate.session_user)) -> dict[str, str]:
    return {"id": user.id, "name": user.username}


@app.get("/dashboard")
async def dashboard(user: Principal = Depends(gate.token_user)) -> dict[str, object]:
    roles: tuple[str, ...] = user.roles
    if user.auth == "api_key":  # an ``ag_`` bearer: no claims, its key record instead
        key_name: str | None = user.api_key.name if user.api_key else None
        return {"roles": list(roles), "key": key_name}
    return {"roles": list(roles), "claims": user.claims or {}}


@app.get("/reports")
async def reports(user: Principal = Depends(gate.user(scopes=["reports:read"]))
                  ) -> list[str]:
    return list(user.scopes)


plain = Starlette()
plain.add_middleware(AuthGateMiddleware, gate=gate)
