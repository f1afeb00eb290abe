"""In-process coalescing for get_or_compute(): concurrent callers that miss on one key run the
computation once.

The first caller for a key becomes its leader and runs the function; callers that arrive while
it runs wait on the leader's event. When the leader succeeds, the waiters read the value it
stored (or, when storing it failed, the very object it returned). When the leader's function raises,
the exception propagates to the leader only: each waiter then starts over, so one of them
becomes the next leader and calls the function itself. A failure is never cached, and an
exception is only ever raised in a thread whose own call ran the function.
"""
import threading
import time


class _Flight:
    __slots__ = ("event", "ok", "value", "leader")

    def __init__(self):
        self.event = threading.Event()
        self.ok = False
        self.value = None
        self.leader = threading.get_ident()


class Coalescer:
    def __init__(self):
        self._lock = threading.Lock()
        self._flights = {}

    def run(self, key, lookup, compute, store):
        """lookup() -> (hit, value); compute() -> value (may raise); store(value, seconds) ->
        value as read back (or the computed one). Returns (value, outcome) where outcome is
        "hit", "miss" (this call computed) or "coalesced" (another call computed it)."""
        while True:
            hit, value = lookup()
            if hit:
                return value, "hit"
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if leader:
                    flight = self._flights[key] = _Flight()
            if not leader:
                if flight.leader == threading.get_ident():
                    raise RuntimeError("get_or_compute(%r) called again from inside its own "
                                       "computation: it would wait for itself" % (key,))
                flight.event.wait()
                if flight.ok:
                    hit, value = lookup()  # the stored copy, as any later caller would get it
                    return (value if hit else flight.value), "coalesced"
                continue  # the leader failed: start over, maybe as the next leader
            try:
                # Someone may have stored the value between our miss and our election.
                hit, value = lookup()
                if hit:
                    flight.ok, flight.value = True, value
                    return value, "hit"
                t0 = time.perf_counter()
                value = compute()
                seconds = time.perf_counter() - t0
                value = store(value, seconds)
                flight.ok, flight.value = True, value
                return value, "miss"
            finally:
                with self._lock:
                    del self._flights[key]
                flight.event.set()

    def in_flight(self):
        with self._lock:
            return len(self._flights)
