"""The alert engine's in-memory index: per symbol and direction, sorted scaled-int64 thresholds in compact arrays.

Prices are integers at SCALE (10^8: exact for every threshold the service accepts). A tick price with more decimals
is passed as its floor `f` and ceiling `c` (equal for almost every tick). The crossing rule of DESIGN section 5, for
integer thresholds T: "above T" fires on prev < T <= curr, i.e. floor(prev) < T <= floor(curr); "below T" fires on
curr <= T < prev, i.e. ceil(curr) <= T < ceil(prev).

So, per symbol, the price sits in one bucket of the above thresholds (i = how many are <= floor) and one of the
below thresholds (j = how many are < ceil). A tick fires above alerts iff it leaves its above bucket upwards, and
below alerts iff it leaves its below bucket downwards. Each symbol keeps the intersection of the two buckets as
[lower, upper]; a tick inside it changes nothing and is rejected by two integer comparisons. Any other tick is
bisected: O(log n + k) for the k alerts it fires, which are removed from the index and returned.

Memory: per alert one int64 threshold, the 16-byte id, the trigger count and cooldown (int32) and the expiry (int64
epoch seconds, 0 for none) in parallel arrays: 40 bytes plus the arrays' slack; no object per alert.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

PRICE_DECIMALS = 8
SCALE = 10**PRICE_DECIMALS
_NEG = -(2**63)
_POS = 2**63 - 1


def scaled(price: Decimal) -> tuple[int, int]:
    """(floor, ceil) of price x SCALE, exactly."""
    q = price.scaleb(PRICE_DECIMALS)
    f = int(q)  # truncation is the floor: prices are positive
    return (f, f) if f == q else (f, f + 1)


def scaled_threshold(price: Decimal) -> int:
    """A threshold as stored: exact (thresholds have at most PRICE_DECIMALS decimals)."""
    f, c = scaled(price)
    if f != c:
        raise ValueError(f"threshold {price} has more than {PRICE_DECIMALS} decimal places")
    return f


@dataclass(frozen=True, slots=True)
class Entry:
    """One alert as the index holds it (and hands it back when a tick crosses it)."""

    symbol: str
    direction: str  # above | below
    threshold: int  # scaled
    id: bytes  # 16 bytes: uuid.bytes
    trigger_count: int
    cooldown_s: int
    expires: int  # epoch seconds, 0 = never


class _Side:
    __slots__ = ("cooldowns", "counts", "expires", "ids", "thr")

    def __init__(self) -> None:
        self.thr = array("q")
        self.ids = bytearray()
        self.counts = array("i")
        self.cooldowns = array("i")
        self.expires = array("q")

    def __len__(self) -> int:
        return len(self.thr)

    def insert(self, e: Entry) -> None:
        i = bisect_right(self.thr, e.threshold)
        self.thr.insert(i, e.threshold)
        self.ids[16 * i : 16 * i] = e.id
        self.counts.insert(i, e.trigger_count)
        self.cooldowns.insert(i, e.cooldown_s)
        self.expires.insert(i, e.expires)

    def find(self, threshold: int, id_: bytes) -> int:
        i = bisect_left(self.thr, threshold)
        n = len(self.thr)
        while i < n and self.thr[i] == threshold:
            if self.ids[16 * i : 16 * i + 16] == id_:
                return i
            i += 1
        return -1

    def take(self, symbol: str, direction: str, lo: int, hi: int) -> list[Entry]:
        """Remove and return the entries at positions lo..hi-1."""
        ids = self.ids
        taken = [
            Entry(symbol, direction, self.thr[k], bytes(ids[16 * k : 16 * k + 16]), self.counts[k], self.cooldowns[k],
                  self.expires[k])
            for k in range(lo, hi)
        ]  # fmt: skip
        del self.thr[lo:hi], self.counts[lo:hi], self.cooldowns[lo:hi], self.expires[lo:hi]
        del ids[16 * lo : 16 * hi]
        return taken

    def nbytes(self) -> int:
        return sum(sys.getsizeof(a) for a in (self.thr, self.ids, self.counts, self.cooldowns, self.expires))


class _Symbol:
    __slots__ = ("above", "below", "c", "f", "lower", "upper")

    def __init__(self) -> None:
        self.above = _Side()
        self.below = _Side()
        self.f: int | None = None  # the last price seen, floor and ceil
        self.c: int | None = None
        self.lower = 1  # empty until a price is known: every tick takes the slow path
        self.upper = 0

    def rebound(self) -> None:
        """Recompute [lower, upper] from the last price: the prices a tick may move to without firing or moving
        to another bucket."""
        f, c = self.f, self.c
        if f is None or c is None:
            self.lower, self.upper = 1, 0
            return
        a, b = self.above.thr, self.below.thr
        i = bisect_right(a, f)  # a[i-1] <= f < a[i]
        j = bisect_left(b, c)  # b[j-1] < c <= b[j]
        a_lo = a[i - 1] if i else _NEG
        a_hi = a[i] - 1 if i < len(a) else _POS
        b_lo = b[j - 1] + 1 if j else _NEG
        b_hi = b[j] if j < len(b) else _POS
        self.lower = max(a_lo, b_lo)
        self.upper = min(a_hi, b_hi)


class AlertIndex:
    def __init__(self) -> None:
        self._symbols: dict[str, _Symbol] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def symbols(self) -> Iterable[str]:
        return self._symbols.keys()

    def _symbol(self, symbol: str) -> _Symbol:
        s = self._symbols.get(symbol)
        if s is None:
            s = self._symbols[symbol] = _Symbol()
        return s

    def last_price(self, symbol: str) -> tuple[int, int] | None:
        s = self._symbols.get(symbol)
        return None if s is None or s.f is None or s.c is None else (s.f, s.c)

    def set_price(self, symbol: str, f: int, c: int) -> None:
        """Take `f`/`c` as the symbol's last price without evaluating anything (at start, from last_prices)."""
        s = self._symbol(symbol)
        s.f, s.c = f, c
        s.rebound()

    def add(self, entry: Entry) -> None:
        s = self._symbol(entry.symbol)
        (s.above if entry.direction == "above" else s.below).insert(entry)
        self._count += 1
        s.rebound()

    def load(self, entries: Iterable[Entry]) -> None:
        """Bulk add (at start): sorted once per symbol and side instead of one insert each."""
        groups: dict[tuple[str, str], list[Entry]] = {}
        for e in entries:
            groups.setdefault((e.symbol, e.direction), []).append(e)
        for (symbol, direction), group in groups.items():
            s = self._symbol(symbol)
            side = s.above if direction == "above" else s.below
            group.extend(side.take(symbol, direction, 0, len(side)))
            group.sort(key=lambda e: e.threshold)
            side.thr = array("q", (e.threshold for e in group))
            side.ids = bytearray(b"".join(e.id for e in group))
            side.counts = array("i", (e.trigger_count for e in group))
            side.cooldowns = array("i", (e.cooldown_s for e in group))
            side.expires = array("q", (e.expires for e in group))
        self._count = sum(len(s.above) + len(s.below) for s in self._symbols.values())
        for s in self._symbols.values():
            s.rebound()

    def remove(self, symbol: str, direction: str, threshold: int, id_: bytes) -> bool:
        s = self._symbols.get(symbol)
        if s is None:
            return False
        side = s.above if direction == "above" else s.below
        i = side.find(threshold, id_)
        if i < 0:
            return False
        side.take(symbol, direction, i, i + 1)
        self._count -= 1
        s.rebound()
        return True

    def find(self, id_: bytes) -> tuple[str, str, int] | None:
        """Where the alert with this id is (symbol, direction, threshold), by scanning the ids: for a delete, whose
        row is gone. Milliseconds for a million alerts; deletes are rare."""
        for symbol, s in self._symbols.items():
            for direction, side in (("above", s.above), ("below", s.below)):
                at = side.ids.find(id_)
                while at >= 0 and at % 16:
                    at = side.ids.find(id_, at + 1)
                if at >= 0:
                    return symbol, direction, side.thr[at // 16]
        return None

    def discard(self, id_: bytes) -> bool:
        """Remove the alert with this id, wherever it is."""
        found = self.find(id_)
        return found is not None and self.remove(found[0], found[1], found[2], id_)

    def crossed(self, symbol: str, f: int, c: int) -> list[Entry]:
        """A tick at price floor `f` / ceil `c`: remove and return the alerts it fires, and make it the last price."""
        s = self._symbols.get(symbol)
        if s is None:
            s = self._symbols[symbol] = _Symbol()  # remember its price for alerts added later
        if s.lower <= f and c <= s.upper:
            s.f = f
            s.c = c
            return []
        fired: list[Entry] = []
        pf, pc = s.f, s.c
        if pf is not None and pc is not None:
            a, b = s.above.thr, s.below.thr
            i_prev, i_curr = bisect_right(a, pf), bisect_right(a, f)
            if i_curr > i_prev:
                fired = s.above.take(symbol, "above", i_prev, i_curr)
            j_prev, j_curr = bisect_left(b, pc), bisect_left(b, c)
            if j_curr < j_prev:
                fired += s.below.take(symbol, "below", j_curr, j_prev)
            self._count -= len(fired)
        s.f, s.c = f, c
        s.rebound()
        return fired

    def nbytes(self) -> int:
        """Memory held by the index: the arrays, the per-symbol objects and the symbol table."""
        total = sys.getsizeof(self._symbols)
        for symbol, s in self._symbols.items():
            total += sys.getsizeof(symbol) + sys.getsizeof(s) + sys.getsizeof(s.above) + sys.getsizeof(s.below)
            total += s.above.nbytes() + s.below.nbytes()
        return total
