"""Security notices by mail: a sign-in method (authenticator app, passkey) was added to or
removed from an account. Queued in the mail outbox (delivered and retried by the sender);
sent only when the user has an address."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from authgate.clock import Clock
from authgate.settings import Settings
from authgate.store.mail import Mail
from authgate.store.records import Records

METHOD_WORDS = {"totp": "An authenticator app", "passkey": "A passkey"}


@dataclass(eq=False)
class FactorNotices:
    settings: Settings
    clock: Clock
    records: Records
    wake: Callable[[], None] = lambda: None  # the mail sender: something was queued

    async def factor_changed(self, user_id: str, change: str, method: str, name: str = "",
                             *, by_operator: bool = False) -> bool:
        """Queue "``method`` was ``change`` (added/removed)" to the user's address; False
        when the user has none."""
        user = await self.records.get_user(user_id)
        if user is None or not user.email:
            return False
        url = self.settings.public_url
        context = {"username": user.username, "site_url": url, "site": urlsplit(url).netloc,
                   "change": change, "method": METHOD_WORDS.get(method, method),
                   "name": name, "by_operator": by_operator}
        await self.records.queue_mail([Mail(to=user.email, template="factor_notice",
                                            context=context)], self.clock.now())
        self.wake()
        return True
