"""One root, a shallow tree. Adapters map these onto the contract's JSON errors; a client is
never told *why* a credential was refused."""

from __future__ import annotations


class AuthGateError(Exception):
    """Root of every error authgate raises on purpose."""

    code = "error"
    status = 400

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()
        #: Why, for the server's log only: the client gets the same body for every reason.
        self.reason = reason

    #: Not worth a log line of its own (counted elsewhere: a credential-guessing block).
    quiet = False


class ConfigError(AuthGateError):
    """The configuration is invalid."""

    code = "config"


class InvalidCredentials(AuthGateError):
    """Invalid username or password."""

    code = "invalid_credentials"
    status = 401


class NotAuthenticated(AuthGateError):
    """Authentication required."""

    code = "unauthorized"
    status = 401


class InvalidToken(NotAuthenticated):
    """The access token is invalid."""

    code = "invalid_token"


class InsufficientScope(AuthGateError):
    """The credential lacks a required scope."""

    code = "insufficient_scope"
    status = 403


class CsrfError(AuthGateError):
    """Cross-site request refused: a valid X-CSRF-Token and a same-origin request are required."""

    code = "csrf"
    status = 403


class PolicyError(AuthGateError):
    """The password does not meet the policy."""

    code = "password_policy"
    status = 422


class UsernameTaken(AuthGateError):
    """That username is taken."""

    code = "username_taken"
    status = 409


class EmailTaken(AuthGateError):
    """That email address is in use."""

    code = "email_taken"
    status = 409


class InvalidEmail(AuthGateError):
    """That is not a valid email address."""

    code = "invalid_email"
    status = 422


class InvalidMailToken(AuthGateError):
    """The link is invalid, used or expired."""

    code = "invalid_token"


class EmailState(AuthGateError):
    """The address is already verified, or there is none."""

    code = "email_state"
    status = 409


class EmailNotVerified(AuthGateError):
    """Verify your email address before signing in."""

    code = "email_not_verified"
    status = 403


class RegistrationClosed(AuthGateError):
    """Registration is closed."""

    code = "registration_closed"
    status = 403


class SelfLockout(AuthGateError):
    """An admin cannot disable or delete their own account, or take away their own admin
    access, through the admin API."""

    code = "self_lockout"
    status = 409


class NotFound(AuthGateError):
    """Not found."""

    code = "not_found"
    status = 404


class Throttled(AuthGateError):
    """Too many failed attempts; try again later."""

    code = "too_many_requests"
    status = 429

    def __init__(self, retry_after: int, *, reason: str | None = None) -> None:
        super().__init__(reason=reason)
        self.retry_after = max(1, int(retry_after))


class InvalidGrant(AuthGateError):
    """The grant is invalid, expired or revoked."""

    code = "invalid_grant"


class InvalidRequest(AuthGateError):
    """The request is malformed."""

    code = "invalid_request"


class UnsupportedGrantType(AuthGateError):
    """That grant_type is not supported."""

    code = "unsupported_grant_type"


class BackendUnavailable(AuthGateError):
    """A backend this request needs is unavailable."""

    code = "unavailable"
    status = 503


class WrongPassword(AuthGateError):
    """The current password is wrong."""

    code = "invalid_credentials"
    status = 403


class BadRequest(AuthGateError):
    """The request body is not acceptable."""

    code = "invalid_request"


class PayloadTooLarge(AuthGateError):
    """The request body is larger than 64 KiB."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(AuthGateError):
    """Send application/json."""

    code = "unsupported_media_type"
    status = 415


class MfaRequired(AuthGateError):
    """The password was right; a second factor is required to finish signing in."""

    code = "mfa_required"
    status = 401  # 403 at the token endpoint (OAuth: the client authenticated nothing)

    def __init__(self, mfa_token: str, methods: tuple[str, ...] = ("totp", "recovery_code")
                 ) -> None:
        super().__init__(reason="second factor required")
        self.mfa_token = mfa_token
        self.methods = methods


class InvalidCode(AuthGateError):
    """The code is wrong, expired or was already used."""

    code = "invalid_code"


class WrongCode(InvalidCode):
    """The second-factor code is wrong."""

    status = 403


class InvalidMfaToken(AuthGateError):
    """The mfa_token is invalid or expired; sign in again."""

    code = "invalid_mfa_token"
    status = 401


class MfaAlreadyActive(AuthGateError):
    """An authenticator app is already active; remove it first."""

    code = "mfa_already_active"
    status = 409


class InsufficientUserAuthentication(AuthGateError):
    """RFC 9470: this needs a stronger or more recent sign-in."""

    code = "insufficient_user_authentication"
    status = 401

    def __init__(self, detail: str, *, mfa: bool = False, max_age: int | None = None) -> None:
        super().__init__(detail, reason=detail)
        self.mfa = mfa
        self.max_age = max_age


class InteractiveSignInRequired(AuthGateError):
    """This needs a sign-in (a session or an access token), not an API key."""

    code = "interactive_sign_in_required"
    status = 403


class TooManyApiKeys(AuthGateError):
    """The user holds the most API keys allowed: revoke one first."""

    code = "too_many_api_keys"
    status = 409


class InvalidPasskey(AuthGateError):
    """The passkey response is invalid, expired or was already used."""

    code = "invalid_passkey"


class PasskeyRefused(InvalidPasskey):
    """That passkey did not sign you in."""

    status = 401


class PasskeyLimit(AuthGateError):
    """You have as many passkeys as an account may hold; delete one first."""

    code = "passkey_limit"
    status = 409
