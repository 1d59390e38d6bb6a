"""Failed console sign-ins, counted per access key id and per client address, so that guessing a
secret through the sign-in form takes a cooling period every few tries.

After `MAX_FAILURES` failures within the lockout period for one name (a key id, or an address),
that name may not try again until the period has passed, even with the right secret: a guesser
learns nothing from an attempt made while locked. Anyone who can reach the form can lock a key id
out of the console this way (not out of the API, whose requests are signed); that is the price of
not letting them guess.

The counts live in this process's memory: a restart forgets them, and servers sharing one database
each count their own attempts. That is acceptable for slowing a guesser down (secrets are long and
random), unlike sign-out, which must hold everywhere and is kept in the metadata store.
"""
from __future__ import annotations

import threading
import time

MAX_FAILURES = 5
# Names tracked at once; beyond this the stalest are forgotten, so that attempts with ever new key ids
# or addresses cannot grow the server's memory without bound.
MAX_TRACKED = 10_000


class SignInThrottle:
    """Who may try to sign in now. Thread-safe: waitress serves sign-ins on several threads."""

    def __init__(self, lockout_seconds: float) -> None:
        self.lockout_seconds = lockout_seconds
        self._failures: dict[str, list[float]] = {}  # name -> when its recent failures happened
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, *names: str) -> float:
        """Seconds until all of `names` may try again; 0 when they may now."""
        now = time.monotonic()
        with self._lock:
            return max([0.0, *(self._locked_until.get(name, now) - now for name in names)])

    def failed(self, *names: str) -> list[str]:
        """Count a failed attempt against each name; returns those it locks out."""
        now = time.monotonic()
        locked = []
        with self._lock:
            for name in names:
                recent = [when for when in self._failures.get(name, []) if now - when < self.lockout_seconds]
                recent.append(now)
                if len(recent) >= MAX_FAILURES:
                    self._failures.pop(name, None)
                    self._locked_until[name] = now + self.lockout_seconds
                    locked.append(name)
                else:
                    self._failures[name] = recent
            self._forget_stale(now)
        return locked

    def succeeded(self, *names: str) -> None:
        """A right secret: the failures of these names so far no longer count."""
        with self._lock:
            for name in names:
                self._failures.pop(name, None)

    def _forget_stale(self, now: float) -> None:
        if len(self._failures) + len(self._locked_until) <= MAX_TRACKED:
            return
        self._locked_until = {name: until for name, until in self._locked_until.items() if until > now}
        self._failures = {name: times for name, times in self._failures.items()
                          if now - times[-1] < self.lockout_seconds}
        excess = len(self._failures) + len(self._locked_until) - MAX_TRACKED
        for name in sorted(self._failures, key=lambda n: self._failures[n][-1])[:max(excess, 0)]:
            del self._failures[name]
