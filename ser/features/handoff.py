"""Handing items from a producer thread to its consumer through a bounded queue."""

from __future__ import annotations

import queue
import threading


def put_unless_stopped(target: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` on `target`, waiting for room in 0.1-s steps until `stop` is set; whether it went in."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
