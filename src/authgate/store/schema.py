"""The relational schema (SQLAlchemy Core) and its versioned migrations.

Times are float seconds since the epoch (UTC). Nothing secret is stored as given: session
IDs and refresh tokens only as SHA-256, passwords only as Argon2id PHC strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("username_key", sa.String(150), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("roles", sa.Text, nullable=False, server_default="[]"),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    # Access tokens issued before this instant are refused (log out everywhere, password
    # change, disable): the per-user cutoff of ASVS 7.4.1.
    sa.Column("tokens_valid_after", sa.Float, nullable=False, server_default="0"),
    # The address as given (normalised by email-validator) and its comparison key
    # (case-folded): unique when set (migration 6).
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("email_key", sa.String(320), nullable=True),
    sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_users_email_key", "email_key", unique=True),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public id, shown in listings
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # absolute
    sa.Column("idle_ttl", sa.Integer, nullable=False),
    sa.Column("remember", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
    # How the user signed in (RFC 8176 methods, space-separated) and when (v7).
    sa.Column("amr", sa.String(64), nullable=False, server_default="pwd"),
    sa.Column("auth_time", sa.Float, nullable=False, server_default="0"),
)

token_families = sa.Table(
    "token_families", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("scope", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # absolute: rotation cannot extend it
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
    # The sign-in that started the family: every refresh keeps them (v7).
    sa.Column("amr", sa.String(64), nullable=False, server_default="pwd"),
    sa.Column("auth_time", sa.Float, nullable=False, server_default="0"),
)

refresh_tokens = sa.Table(
    "refresh_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(32),
              sa.ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
    # The token this one replaced: a grace-window replay of the parent supersedes it.
    sa.Column("parent_hash", sa.String(64), nullable=True, index=True),
)

signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("public_jwk", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("signs_from", sa.Float, nullable=False),  # published before it signs
    sa.Column("retired_at", sa.Float, nullable=True),  # stops signing
    sa.Column("drop_after", sa.Float, nullable=True),  # leaves the JWKS
)

denied_jtis = sa.Table(
    "denied_jtis", metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# Append-only log every process tails to learn of revocations within a second, even with
# no Redis: (kind, key) = ("session", token_hash) | ("family", id) | ("jti", jti) |
# ("user", user_id).
revocations = sa.Table(
    "revocations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False, index=True),
)

server_secrets = sa.Table(
    "server_secrets", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Login throttling shared by every worker and instance on this database (Redis, when
# configured, takes over). scope "acct": consecutive failures and a lock; scope "ip": failures
# in the window starting at window_start.
throttle = sa.Table(
    "throttle", metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("locked_until", sa.Float, nullable=False),
)

# Security events (the audit trail), kept AUDIT_RETENTION_DAYS.
audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=True, index=True),
    sa.Column("actor", sa.String(16), nullable=False, server_default="user"),
    sa.Column("ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
)

# Webhook deliveries waiting to be sent (an outbox): written with their event, claimed by
# one sender at a time (claimed_until), retried with backoff until delivered.
webhook_outbox = sa.Table(
    "webhook_outbox", metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the webhook-id: msg_<random>
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False, index=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.String(200), nullable=False, server_default=""),
)

# Second factors (v7). A TOTP secret is stored only encrypted (AES-GCM under a key derived
# from MFA_KEY, see authgate.core.factors); last_step is the last accepted RFC 6238 time
# step (a code is never accepted twice).
mfa_totp = sa.Table(
    "mfa_totp", metadata,
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("secret_enc", sa.Text, nullable=False),
    sa.Column("confirmed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Single-use recovery codes: only their HMAC is stored.
mfa_recovery_codes = sa.Table(
    "mfa_recovery_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
)

# A first factor that passed, waiting for the second: the SHA-256 of the mfa_token.
mfa_pending = sa.Table(
    "mfa_pending", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("first_factor", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

# Passkeys (WebAuthn credentials, v8): the public key and what the authenticator reported;
# nothing here signs in anybody. sign_count is the last counter seen (clone detection).
passkeys = sa.Table(
    "passkeys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public id, in listings and URLs
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),  # base64url
    sa.Column("public_key", sa.Text, nullable=False),  # COSE key, base64url
    sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("transports", sa.String(200), nullable=False, server_default="[]"),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("aaguid", sa.String(36), nullable=False, server_default=""),
    sa.Column("backup_eligible", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("backed_up", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
)

# WebAuthn challenges (v8): only their SHA-256, single use, 5 minutes, bound to what asked
# for them (a session, a token family, an mfa_token; nothing for a passwordless login).
passkey_challenges = sa.Table(
    "passkey_challenges", metadata,
    sa.Column("challenge_hash", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # register | login | mfa
    sa.Column("binding", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# Single-use mail tokens (verification, address change, password reset), stored only as
# SHA-256; ``email`` is the address the token proves (the new one for a change).
mail_tokens = sa.Table(
    "mail_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # verify | change | reset
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("used_at", sa.Float, nullable=True),
)

# Mails waiting to be sent (an outbox like webhook_outbox): written in the transaction of
# the token they carry. ``secret`` is that token encrypted (AES-GCM under a server secret)
# and is erased once the mail is delivered; the template renders at sending time.
mail_outbox = sa.Table(
    "mail_outbox", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("to_addr", sa.String(320), nullable=False),
    sa.Column("template", sa.String(64), nullable=False),
    sa.Column("context", sa.Text, nullable=False, server_default="{}"),
    sa.Column("secret", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False, index=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.String(200), nullable=False, server_default=""),
)

# API keys (personal access tokens, v8): ``ag_`` + 256 bits, stored only as the SHA-256 of
# the key as given. ``scopes`` space-separated; ``last_used_at`` written at most once a
# minute per key; a revoked key keeps its row (revoked_at) until the purge.
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public id, shown in listings
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema step: tables to create and SQL to run (``needed`` decides whether the SQL
    is due on this database). ``sql()`` is what ``authgate migrate --sql`` prints."""

    version: int
    summary: str
    tables: tuple[sa.Table, ...] = ()
    statements: tuple[str, ...] = ()
    needed: Callable[[Connection], bool] | None = None
    dialects: tuple[str, ...] | None = None  # the statements' dialects (None: all)

    def run(self, conn: Connection) -> None:
        if self.tables:
            metadata.create_all(conn, tables=list(self.tables))
        if self.dialects is not None and conn.dialect.name not in self.dialects:
            return
        if self.statements and (self.needed is None or self.needed(conn)):
            for statement in self.statements:
                conn.execute(sa.text(statement))

    def sql(self, dialect: Dialect) -> list[str]:
        out = [str(CreateTable(table).compile(dialect=dialect)).strip() + ";"
               for table in self.tables]
        out += [str(CreateIndex(index).compile(dialect=dialect)).strip() + ";"
                for table in self.tables for index in sorted(table.indexes, key=str)]
        if self.dialects is not None and dialect.name not in self.dialects:
            return out
        return out + [statement + ";" for statement in self.statements]


def _lacks_parent_hash(conn: Connection) -> bool:
    return "parent_hash" not in {c["name"] for c in sa.inspect(conn).get_columns(
        "refresh_tokens")}


def _lacks_amr(conn: Connection) -> bool:
    return "amr" not in {c["name"] for c in sa.inspect(conn).get_columns("sessions")}


def _lacks_email(conn: Connection) -> bool:
    return "email" not in {c["name"] for c in sa.inspect(conn).get_columns("users")}


# Each migration runs once, in order, in its own transaction. Append; never edit.
MIGRATIONS: list[Migration] = [
    Migration(1, "users, sessions, token families, refresh tokens, keys, revocation log",
              tables=(users, sessions, token_families, refresh_tokens, signing_keys,
                      denied_jtis, revocations, server_secrets)),
    Migration(2, "login throttle counters", tables=(throttle,)),
    Migration(3, "refresh_tokens.parent_hash (grace-window siblings)", statements=(
        "ALTER TABLE refresh_tokens ADD COLUMN parent_hash VARCHAR(64)",
        "CREATE INDEX ix_refresh_tokens_parent_hash ON refresh_tokens (parent_hash)"),
        needed=_lacks_parent_hash),  # databases made before v3; v1 now creates it
    Migration(4, "audit events and the webhook outbox", tables=(audit_events, webhook_outbox)),
    # PostgreSQL: the writing transaction of each revocation-log row, so that readers can
    # tell a row committed late from one they already passed (Records.revocations_since).
    # SQLite serialises writers: ids commit in order there.
    Migration(5, "revocations.txid (a log cursor that cannot skip late commits)", statements=(
        "ALTER TABLE revocations ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL "
        "DEFAULT pg_current_xact_id()",
        "CREATE INDEX IF NOT EXISTS ix_revocations_txid ON revocations (txid, id)"),
        dialects=("postgresql",)),
    # Databases made before v6 lack the users' email columns (v1 now creates them).
    Migration(6, "users.email/email_key/email_verified, mail tokens, the mail outbox",
              tables=(mail_tokens, mail_outbox), statements=(
                  "ALTER TABLE users ADD COLUMN email VARCHAR(320)",
                  "ALTER TABLE users ADD COLUMN email_key VARCHAR(320)",
                  "ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT false",
                  "CREATE UNIQUE INDEX ix_users_email_key ON users (email_key)"),
              needed=_lacks_email),
    # Number 7 is self-contained (it does not depend on 6): a merge may renumber it.
    Migration(7, "second factors (TOTP, recovery codes, pending sign-ins); amr/auth_time",
              tables=(mfa_totp, mfa_recovery_codes, mfa_pending), statements=(
        "ALTER TABLE sessions ADD COLUMN amr VARCHAR(64) DEFAULT 'pwd' NOT NULL",
        "ALTER TABLE sessions ADD COLUMN auth_time FLOAT DEFAULT '0' NOT NULL",
        "ALTER TABLE token_families ADD COLUMN amr VARCHAR(64) DEFAULT 'pwd' NOT NULL",
        "ALTER TABLE token_families ADD COLUMN auth_time FLOAT DEFAULT '0' NOT NULL"),
        needed=_lacks_amr),  # databases made before v7; v1 now creates the columns
    Migration(8, "API keys (personal access tokens)", tables=(api_keys,)),
    Migration(9, "passkeys (WebAuthn credentials) and their challenges",
              tables=(passkeys, passkey_challenges)),
]
LATEST = MIGRATIONS[-1].version
