"""Admission by expected wait: a request's images are admitted only while the encoder
queue would drain within the target wait at the measured throughput, so the queue bound
follows the hardware. An idle encoder always admits (a big request on a slow machine is
slow, not refused)."""

from __future__ import annotations

from typing import Protocol

from service.errors import Overloaded, TooManyImages, retry_after


class Holder(Protocol):
    """What holds the room a reservation takes (the micro-batcher)."""

    def _forget(self, count: int) -> None: ...

    def _resize(self, reservation: Reservation, count: int) -> None: ...


class Reservation:
    """Room for a request's images, held from admission until they are queued (or the
    request fails before that, when :meth:`release` gives the room back)."""

    def __init__(self, batcher: Holder, count: int) -> None:
        self._batcher = batcher
        self.count = count

    def release(self) -> None:
        count, self.count = self.count, 0
        if count:
            self._batcher._forget(count)

    def resize(self, count: int) -> None:
        """Hold room for ``count`` images instead (the faces found after decoding, each
        encoded as one image): growing is admitted as a new request would be, shrinking
        gives the room back at once."""
        self._batcher._resize(self, count)


def check_room(
    count: int,
    extra: int,
    ahead: int,
    pending: int,
    rate: float,
    target_wait_s: float,
    max_queued: int,
) -> None:
    """Raise unless ``extra`` more images fit (``count``: the request's whole size,
    ``ahead``: other requests' images). Growing past the hard cap alone is 413; past the
    target wait, 429 with the seconds until the images ahead have drained."""
    if count > max_queued:
        raise TooManyImages(f"{count} images can never fit the encoder queue of {max_queued}")
    wait = (pending + extra) / rate if rate > 0 else 0.0
    if ahead and (pending + extra > max_queued or wait > target_wait_s):
        drain_s = ahead / rate if rate > 0 else 1.0
        raise Overloaded(
            f"{ahead} images are ahead (about {drain_s:.1f} s of work at "
            f"{rate:.1f} img/s; target wait {target_wait_s:g} s); retry later",
            headers=retry_after(drain_s),
        )
