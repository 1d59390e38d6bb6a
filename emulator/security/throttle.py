"""Failed console sign-ins, counted per access key id and per client address, so that guessing a
secret through the sign-in form takes a cooling period every few tries.

After `MAX_FAILURES` failures within the lockout period for one name (a key id, or an address),
that name may not try again until the period has passed, even with the right secret: a guesser
learns nothing from an attempt made while locked. Anyone who can reach the form can lock a key id
out of the console this way (not out of the API, whose requests are signed); that is the price of
not letting them guess.

The counts and lockouts live in the metadata store (`SignInAttempts`), not in a process: behind a
balancer that spreads a guesser's attempts over a fleet's nodes, the fifth failure on any node
locks the name out on all of them, and a restart does not forget it. Only sign-in attempts read or
write them, and each failure deletes the rows older than the lockout period, so the tables hold at
most one period's failures (and an address is itself locked after five).
"""
from __future__ import annotations

from emulator.store.repositories import SignInAttempts

MAX_FAILURES = 5


class SignInThrottle:
    """Who may try to sign in now, by this module's rules, over the store's shared counts."""

    def __init__(self, attempts: SignInAttempts, lockout_seconds: float) -> None:
        self.lockout_seconds = lockout_seconds
        self._attempts = attempts

    def wait(self, *names: str) -> float:
        """Seconds until all of `names` may try again; 0 when they may now."""
        return self._attempts.wait(names)

    def failed(self, *names: str) -> list[str]:
        """Count a failed attempt against each name; returns those it locks out."""
        return self._attempts.failed(names, MAX_FAILURES, self.lockout_seconds)

    def succeeded(self, *names: str) -> None:
        """A right secret: the failures of these names so far no longer count."""
        self._attempts.forget(names)
