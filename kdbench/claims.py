"""Which process trains a run, when several sweeps share one store and one cache.

Before a driver trains a run it takes the run's claim: an exclusive lock on
``<cache>/claims/<fingerprint>.lock`` (``filelock``, an OS file lock). A run whose claim
another process holds is not trained here: the driver trains what it could claim, then
waits for the rest and reuses them once they are FINISHED in the store. The operating
system drops a lock when its process ends, however it ends (SIGKILL, the OOM killer), so a
dead holder's runs are taken over. The lock files stay (empty): removing one that another
process may be about to lock would let two processes hold "the same" claim.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from filelock import FileLock, Timeout


class Claims:
    """The claims one driver holds under ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = Path(cache_dir) / "claims"
        self.held: dict[str, FileLock] = {}

    def take(self, fingerprint: str) -> bool:
        """Claim ``fingerprint`` unless another process holds it; whether this one does."""
        if fingerprint in self.held:
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / f"{fingerprint}.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return False
        self.held[fingerprint] = lock
        return True

    def release(self, fingerprint: str) -> None:
        lock = self.held.pop(fingerprint, None)
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.release()

    def release_all(self) -> None:
        for fingerprint in list(self.held):
            self.release(fingerprint)
