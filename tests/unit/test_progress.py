"""Progress lines of long loops (preprocessing shards): items done, rate, time left, every few seconds."""

import logging

from osteoloc.progress import Progress


def test_progress_logs_every_few_seconds_with_rate_and_time_left(caplog):
    now = [100.0]
    progress = Progress(10, "radiographs", logging.getLogger("shard"), every=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="shard"):
        for _ in range(10):
            now[0] += 2.0  # two seconds per radiograph
            progress.step()
    lines = [r.getMessage() for r in caplog.records]
    # a line at 6 s (3 done), 12 s (6), 18 s (9) and the last item, not one per item
    assert lines == ["3/10 radiographs, 0.50/s, ~14 s left", "6/10 radiographs, 0.50/s, ~8 s left",
                     "9/10 radiographs, 0.50/s, ~2 s left", "10/10 radiographs, 0.50/s, ~0 s left"]
