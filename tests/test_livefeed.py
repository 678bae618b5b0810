"""The live frame buffer: drop policies when the model falls behind, batch timeouts."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream_denoise.frame import Frame
from stream_denoise.livefeed import LiveFeed


def _frames(n: int, every: float = 0.0, shape=(4, 4, 3)):
    for i in range(n):
        if every:
            time.sleep(every)
        yield Frame(i, np.zeros(shape, np.uint8), pts=i)


def _run(feed: LiveFeed, frames, size: int, timeout: float, consume_delay: float):
    filler = threading.Thread(target=feed.fill, args=(frames,))
    filler.start()
    out = []
    for batch in feed.batches(size, timeout):
        out.append([f.index for f in batch.frames])
        time.sleep(consume_delay)
    filler.join()
    return out


@pytest.mark.parametrize("policy", ["oldest", "newest", "none"])
def test_a_slow_consumer_and_each_drop_policy(policy):
    feed = LiveFeed(capacity=4, policy=policy, stopped=lambda: False)
    # A quick producer and a slow consumer: the first batch waits, the buffer fills.
    got = [i for b in _run(feed, _frames(40, every=0.002), 2, 0.05, 0.05) for i in b]
    assert got == sorted(got) and len(set(got)) == len(got)  # in order, never twice
    assert len(got) + feed.dropped == 40
    if policy == "none":
        assert feed.dropped == 0 and got == list(range(40))
    else:
        assert feed.dropped > 10
    if policy == "oldest":
        assert got[-1] == 39  # the freshest frame always gets through
    if policy == "newest":
        assert got[:4] == [0, 1, 2, 3] and got[-1] < 39


def test_slow_frames_leave_in_partial_batches_after_the_timeout():
    feed = LiveFeed(capacity=32, policy="oldest", stopped=lambda: False)
    started = time.monotonic()
    batches = _run(feed, _frames(12, every=0.04), 8, 0.1, 0.0)
    assert [i for b in batches for i in b] == list(range(12))
    assert max(len(b) for b in batches) <= 4  # never waited to fill 8 (that takes 0.32 s)
    assert time.monotonic() - started < 1.5


def test_a_size_change_starts_a_new_batch():
    frames = list(_frames(3)) + list(_frames(3, shape=(2, 2, 3)))
    feed = LiveFeed(capacity=16, policy="none", stopped=lambda: False)
    feed.fill(frames)
    assert [len(b.frames) for b in feed.batches(8, 0.05)] == [3, 3]


def test_a_drain_ends_the_batches_while_the_decoder_still_waits():
    """A camera that went quiet holds its decoder in a read; a drain takes the frames
    buffered and ends without it."""
    draining, quiet = threading.Event(), threading.Event()

    def camera():
        yield from _frames(3)
        quiet.wait(10)  # connected, sending nothing

    feed = LiveFeed(capacity=8, policy="none", stopped=lambda: False, draining=draining.is_set)
    filler = threading.Thread(target=feed.fill, args=(camera(),), daemon=True)
    filler.start()
    time.sleep(0.2)
    draining.set()
    started = time.monotonic()
    got = [f.index for b in feed.batches(8, 0.05) for f in b.frames]
    assert got == [0, 1, 2] and time.monotonic() - started < 1.0
    assert filler.is_alive()  # still in its read; nobody waited for it
    quiet.set()
    filler.join(timeout=5)
