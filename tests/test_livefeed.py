"""The live frame buffer: drop policies when the model falls behind, batch timeouts."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream_denoise import livefeed
from stream_denoise.frame import Frame
from stream_denoise.livefeed import LiveFeed


def _frames(n: int, every: float = 0.0, shape=(4, 4, 3)):
    for i in range(n):
        if every:
            time.sleep(every)
        yield Frame(i, np.zeros(shape, np.uint8), pts=i)


class Clock:
    """The feed's clock (its module's ``time``), moved by the test alone."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class Script:
    """A decoder and a model taking turns on one thread, as the test says, on a fake
    clock: what the feed decides (which frames it drops, when a batch leaves) then
    follows from the order of events alone, not from how loaded the machine is.

    ``take()`` is the model asking for its next batch. A wait on the feed's condition
    moves the clock by its timeout instead of sleeping; a wait of the decoder's (the
    buffer full under ``none``) is where the model, on its own thread, would take a
    batch, so it does."""

    def __init__(self, feed: LiveFeed, size: int, timeout: float, monkeypatch) -> None:
        self.clock, self.feed = Clock(), feed
        monkeypatch.setattr(livefeed, "time", self.clock)
        script = self

        class Condition(threading.Condition):
            def wait(self, timeout=None):
                assert timeout is not None and script.clock.now < 60, "the feed waits for ever"
                script.decoder_waits += not script.taking
                script.clock.now += timeout
                if not script.taking:
                    script.take()
                return False

        feed._cond = Condition()
        self.batches = feed.batches(size, timeout)
        self.taking, self.decoder_waits = False, 0
        self.taken: list[tuple[float, list[int]]] = []  # (clock when it left, frame indices)

    def take(self) -> None:
        self.taking = True
        try:
            batch = next(self.batches)
        finally:
            self.taking = False
        self.taken.append((self.clock.now, [f.index for f in batch.frames]))

    def rest(self) -> list[int]:
        for batch in self.batches:
            self.taken.append((self.clock.now, [f.index for f in batch.frames]))
        return [i for _, frames in self.taken for i in frames]


@pytest.mark.parametrize(("policy", "got", "dropped"), [
    ("oldest", [0, 1, 4, 5, 8, 9, 10, 11], [2, 3, 6, 7]),
    ("newest", [0, 1, 2, 3, 4, 5, 8, 9], [6, 7, 10, 11]),
    ("none", list(range(12)), []),
])
def test_a_slow_consumer_and_each_drop_policy(policy, got, dropped, monkeypatch):
    """Room for 4 frames, batches of 2, and a model that takes a batch only after every
    4 frames decoded: the buffer overflows twice by 2 frames. ``oldest`` drops the
    longest-waiting frames (the freshest always get through), ``newest`` the ones that
    just arrived, and ``none`` drops nothing: the decoder waits for the model instead."""
    feed = LiveFeed(capacity=4, policy=policy, stopped=lambda: False)
    script = Script(feed, size=2, timeout=0.05, monkeypatch=monkeypatch)

    def decoder():
        for frame in _frames(12):
            if frame.index in (4, 8) and policy != "none":
                script.take()
            yield frame

    feed.fill(decoder())
    assert script.rest() == got
    assert feed.dropped == len(dropped) and sorted(set(range(12)) - set(got)) == dropped
    # the decoder waited (for a batch to be taken) only under "none", once per frame that
    # found the buffer full: 4, 6, 8 and 10
    assert script.decoder_waits == (4 if policy == "none" else 0)


def test_slow_frames_leave_in_partial_batches_after_the_timeout(monkeypatch):
    """Batches of 8, a timeout of 1/8 s, a frame every 1/32 s: the model, idle, takes the
    three frames there are and leaves with them 1/8 s after the first was taken, without
    waiting to fill 8 (that would take 1/4 s); a full batch leaves at once, and so does
    the last one when the input ends."""
    feed = LiveFeed(capacity=32, policy="oldest", stopped=lambda: False)
    script = Script(feed, size=8, timeout=1 / 8, monkeypatch=monkeypatch)

    def decoder():
        for frame in _frames(12):
            if frame.index in (3, 11):
                script.take()
            script.clock.now += 1 / 32
            yield frame

    feed.fill(decoder())
    assert script.rest() == list(range(12))
    assert [frames for _, frames in script.taken] == [[0, 1, 2], list(range(3, 11)), [11]]
    left = [t for t, _ in script.taken]
    assert left[0] == pytest.approx(3 / 32 + 1 / 8)  # taken at 3/32 s, left a timeout later
    assert left[1:] == [3 / 32 + 1 / 8 + 8 / 32, 3 / 32 + 1 / 8 + 9 / 32]  # no wait at all


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
    got = [f.index for b in feed.batches(8, 0.05) for f in b.frames]
    assert got == [0, 1, 2]
    assert filler.is_alive()  # still in its read (10 s): the batches ended without waiting for it
    quiet.set()
    filler.join(timeout=5)
