"""Progress of a long loop in its job's log: items done, rate and time left, at most every few seconds."""

import time


class Progress:
    """Call `step()` once per item; logs `done/total <what>, rate/s, ~time left` through `logger` when
    `every` seconds have passed since the last line (and once at the end)."""

    def __init__(self, total, what, logger, every=5.0, clock=time.monotonic):
        self.total, self.what, self.logger, self.every, self.clock = int(total), what, logger, every, clock
        self.done = 0
        self.start = self.last = clock()

    def step(self, n=1):
        self.done += n
        now = self.clock()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.logger.info("%d/%d %s, %.2f/s, ~%.0f s left", self.done, self.total, self.what, rate, left)
