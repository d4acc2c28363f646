"""The admit stage: a request's images are admitted only while the encoder queue would drain
within the target wait at the measured throughput, so the queue bound follows the hardware.
An idle encoder always admits (a big request on a slow machine is slow, not refused).

One :class:`Admission` ledger per encoder counts the images reserved, queued and running.
A request takes a :class:`Reservation` before any decoding; the reservation travels with it
and the micro-batcher, which receives it with the rows, converts it into queued images
(growing it first when faces gave more rows than images, admitted as a new request would
be). The batcher settles the ledger after every batch and feeds it the throughput it saw.
"""

from __future__ import annotations

import threading

from service.errors import Overloaded, ShuttingDown, TooManyImages, retry_after

RATE_SMOOTHING = 0.2  # weight of the newest batch in the throughput estimate


class Admission:
    def __init__(self, *, target_wait_s: float, max_queued: int, img_s: float = 0.0) -> None:
        """``img_s``: the throughput measured for the encoder's layout at start-up (0: not
        measured yet; an unmeasured encoder admits everything up to ``max_queued``)."""
        self.target_wait_s = target_wait_s
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._pending = 0  # reserved + queued + running images
        self._rate = img_s  # images per second, all workers
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def throughput(self) -> float:
        return self._rate

    @property
    def expected_wait_s(self) -> float:
        """How long a newly queued image would wait at the measured throughput."""
        return self._pending / self._rate if self._rate > 0 else 0.0

    def reserve(self, count: int) -> Reservation:
        """Admit ``count`` images now or refuse at once: a busy encoder admits while the
        queue would drain within the target wait and holds fewer than ``max_queued``."""
        reservation = Reservation(self, 0)
        reservation.resize(count)
        return reservation

    def check(self, count: int = 1) -> None:
        """Raise what :meth:`reserve` would, without reserving: lets a request be refused
        before its body is read, so a flood of uploads costs little."""
        with self._lock:
            self._check(count, extra=count, ahead=self._pending)

    def close(self) -> None:
        """Refuse every new reservation (503): the encoder is stopping."""
        self._closed = True

    def measured(self, img_s: float) -> None:
        """A throughput measured by calibration replaces the estimate."""
        with self._lock:
            self._rate = img_s

    def observe(self, img_s: float) -> None:
        """A batch's throughput, smoothed into the estimate admission uses."""
        with self._lock:
            self._rate = (
                img_s
                if self._rate <= 0
                else (1 - RATE_SMOOTHING) * self._rate + RATE_SMOOTHING * img_s
            )

    def settle(self, count: int) -> None:
        """``count`` images left the encoder (answered or failed): their room is free."""
        with self._lock:
            self._pending -= count

    def _resize(self, reservation: Reservation, count: int) -> None:
        extra = count - reservation.count
        with self._lock:
            if extra > 0:
                self._check(count, extra, ahead=self._pending - reservation.count)
            self._pending += extra
            reservation.count = count

    def _check(self, count: int, extra: int, ahead: int) -> None:
        """``count``: the request's whole size, ``ahead``: other requests' images. Growing
        past the hard cap alone is 413; past the target wait, 429 with the seconds until
        the images ahead have drained."""
        if self._closed:
            raise ShuttingDown()
        if count > self.max_queued:
            raise TooManyImages(
                f"{count} images can never fit the encoder queue of {self.max_queued}"
            )
        rate = self._rate
        wait = (self._pending + extra) / rate if rate > 0 else 0.0
        if ahead and (self._pending + extra > self.max_queued or wait > self.target_wait_s):
            drain_s = ahead / rate if rate > 0 else 1.0
            raise Overloaded(
                f"{ahead} images are ahead (about {drain_s:.1f} s of work at "
                f"{rate:.1f} img/s; target wait {self.target_wait_s:g} s); retry later",
                headers=retry_after(drain_s),
            )


class Reservation:
    """Room for a request's images, held from admission until they are queued (or the
    request fails before that, when :meth:`release` gives the room back)."""

    def __init__(self, ledger: Admission, count: int) -> None:
        self._ledger = ledger
        self.count = count

    def resize(self, count: int) -> None:
        """Hold room for ``count`` images instead (the faces found after decoding, each
        encoded as one image): growing is admitted as a new request would be, shrinking
        gives the room back at once."""
        self._ledger._resize(self, count)

    def queued(self, count: int) -> None:
        """``count`` images were queued under this reservation: from now on the batcher
        accounts for them (it settles the ledger after each batch)."""
        self.resize(count)
        self.count = 0

    def release(self) -> None:
        count, self.count = self.count, 0
        if count:
            self._ledger.settle(count)
