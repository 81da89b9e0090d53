"""A test client that keeps cookies the way a browser on HTTPS would (``Secure`` and
``__Host-`` cookies included), so tests run the secure defaults over plain loopback HTTP."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx


def share_default_ssl_context() -> None:
    """Every httpx client builds its default SSL context again, loading the whole CA bundle
    (~35 ms; a fifth of an in-process test module's time, for clients that speak plain HTTP
    to loopback). One default context for the run: an ``SSLContext`` may serve many clients.
    Anything but the default (``verify=`` a path or context, a client ``cert``) is built as
    before."""
    import httpx._transports.default as transport

    original = transport.create_ssl_context
    shared = original()

    def create(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        return shared if verify is True and cert is None else original(
            verify=verify, cert=cert, trust_env=trust_env)

    transport.create_ssl_context = create  # type: ignore[assignment]


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """``name=value; Attr=x; Flag`` → (name, value, {attr-lowercased: value})."""
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attrs: dict[str, str] = {}
    for item in rest:
        key, _, val = item.strip().partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


class AuthClient(httpx.Client):
    """An httpx client with a hand-kept cookie jar and the CSRF header of its last login."""

    def __init__(self, base_url: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(base_url=base_url, timeout=30, **kwargs)
        secure = str(settings.get("cookie_secure", True)).lower() != "false"
        prefix = "__Host-" if secure else ""
        self.session_cookie = f"{prefix}authgate"
        self.access_cookie = f"{prefix}authgate-at"
        self.refresh_cookie = f"{'__Secure-' if secure else ''}authgate-rt"
        self.jar: dict[str, str] = {}
        self.csrf: str | None = None
        self.origin = base_url

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        headers = dict(kwargs.pop("headers", None) or {})
        if self.jar and not any(k.lower() == "cookie" for k in headers):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        response = super().request(method, url, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            name, value, attrs = parse_set_cookie(raw)
            if attrs.get("max-age") == "0" or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response

    # -- the flows -------------------------------------------------------------------------

    def login(self, username: str, password: str, remember: bool = False,
              **kwargs: Any) -> httpx.Response:
        r = self.post("/auth/login", json={"username": username, "password": password,
                                           "remember": remember}, **kwargs)
        if r.status_code == 200:
            self.csrf = r.json()["csrf_token"]
        return r

    def unsafe(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """An unsafe request as the app's own page would send it: CSRF header + Origin."""
        headers = {"X-CSRF-Token": self.csrf or "", "Origin": self.origin,
                   **(kwargs.pop("headers", None) or {})}
        return self.request(method, url, headers=headers, **kwargs)

    def token(self, username: str, password: str, **extra: Any) -> httpx.Response:
        return self.post("/auth/token", data={"grant_type": "password", "username": username,
                                              "password": password, **extra})

    @property
    def session_value(self) -> str | None:
        return self.jar.get(self.session_cookie)


def cookie_attrs(response: httpx.Response, name: str) -> dict[str, str] | None:
    for raw in response.headers.get_list("set-cookie"):
        cname, value, attrs = parse_set_cookie(raw)
        if cname == name:
            return {"value": value, **attrs}
    return None


class ReadsTokens:
    """What both server layers (subprocess and in-process) give tests about access tokens
    (the class it is mixed into has the server's ``cli``)."""

    def signed_token(self, token: str) -> str:
        """The signed JWT of an access token: ``token`` itself, or, for a nested JWT
        (``TOKEN_ENCRYPTION=true``), what it decrypts to with the key that ``keys
        export-decryption-key`` exports (as a resource server would); keys cached by kid."""
        if token.count(".") != 4:
            return token
        from joserfc import jwe
        from joserfc.jwk import ECKey

        from tests.tokens.forge import b64u_decode

        kid = json.loads(b64u_decode(token.split(".")[0]))["kid"]
        keys = self.__dict__.setdefault("_decryption_keys", {})
        if kid not in keys:
            done = self.cli("keys", "export-decryption-key", "--kid", kid)
            assert done.returncode == 0, done.stderr
            keys[kid] = ECKey.import_key(json.loads(done.stdout))
        plain = jwe.decrypt_compact(token, keys[kid],
                                    algorithms=["ECDH-ES+A256KW", "A256GCM"]).plaintext
        return (plain or b"").decode("ascii")


__all__ = ["AuthClient", "ReadsTokens", "cookie_attrs", "parse_set_cookie",
           "share_default_ssl_context"]


def random_cookie(name: str = "authgate") -> dict[str, str]:
    """A ``Cookie`` header with a random (never issued) session cookie value."""
    return {"Cookie": f"{name}={secrets.token_urlsafe(32)}"}
