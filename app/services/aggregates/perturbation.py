"""The cell-key method of published aggregates (the ABS TableBuilder approach).

Every response carries a random record key of RECORD_KEY_BITS bits, fixed at storage. A cell's
key is the sum of its records' keys modulo 2**KEY_BITS, summed by the database in the same
aggregate that counts the cell (queries.COUNT_BITS). The noise added to a count is looked up in
PERTURBATION_TABLE by the cell key and the count (capped at TABLE_CAP), so:

- the same set of records always shows the same figure, in every query that contains it:
  repeating a query, or reaching the cell through other filters, gains nothing;
- a cell one record away from another has an unrelated key: differencing two noisy figures
  gives noise, not a respondent;
- the noise is bounded (|noise| <= MAX_NOISE), has mean zero in every row (exactly: the rows are
  counts out of 128 key values), a small variance (at most NOISE_VARIANCE), never makes a count
  negative, and an exact zero stays zero.

A true count of 1 or 2 can be published as 0, so a published zero does not prove that nobody is
in a cell. The table is public (README); the protection rests on the keys being secret.

Numeric statistics (mean, median, standard deviation) of a cell get a bounded, key-derived
noise of at most half their standard error, so summing means times counts across a partition
does not give back one respondent's value; min and max, single people's answers, are never
published.
"""

import hashlib
import math

from app.services.aggregates.figures import Tally, statistics
from app.services.responses.rules import RECORD_KEY_BITS

KEY_MODULUS = 1 << RECORD_KEY_BITS
KEY_BITS = 7  # 128 key values: the pass packs a count and its cell key in one sum
KEY_VALUES = 1 << KEY_BITS
TABLE_CAP = 2  # counts of 2 or more share the last row

# Each row: noise -> how many of the 128 cell-key values give it (they add up to 128).
PERTURBATION_TABLE: dict[int, dict[int, int]] = {
    0: {0: 128},
    1: {-1: 48, 0: 48, 1: 16, 2: 16},
    2: {-2: 12, -1: 28, 0: 48, 1: 28, 2: 12},
}
MAX_NOISE = 2
NOISE_VARIANCE = 1.1875  # the largest row variance: (2*12*4 + 2*28) / 128

# Numeric statistics: the noise is a fixed fraction of the statistic's standard error.
STATISTIC_NOISE = 0.5
DECIMALS = 4  # published statistics are rounded to this many decimals


def _expand(row: dict[int, int]) -> tuple[int, ...]:
    """The row as a lookup of KEY_VALUES entries; the noises are interleaved, not in runs, so
    that neighbouring keys do not share a noise."""
    values = [noise for noise, times in sorted(row.items()) for _ in range(times)]
    return tuple(values[(index * 149) % KEY_VALUES] for index in range(KEY_VALUES))


# 149 is odd, so index -> index * 149 mod 128 is a permutation and every entry is used once.
_LOOKUP = {count: _expand(row) for count, row in PERTURBATION_TABLE.items()}


def cell_key(key_sum: int) -> int:
    """The cell key from any sum of the records' keys (only its low KEY_BITS bits count)."""
    return key_sum % KEY_VALUES


def noise(key: int, count: int) -> int:
    """The noise the table gives a cell of `count` records whose key is `key`."""
    return _LOOKUP[min(count, TABLE_CAP)][cell_key(key)]


def perturb(count: int, key: int) -> int:
    return count + noise(key, count)


def _uniform(key: int, what: str) -> float:
    """A value in [-1, 1] fixed by the cell key: the same cell, the same noise."""
    digest = hashlib.blake2b(f"{what}:{cell_key(key)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(1 << 63) - 1.0


def perturb_tally(tally: Tally, *, numbers_from: int) -> Tally:
    """A tally whose counts are perturbed cell by cell (the keys were summed beside them).

    An option's count never exceeds the cell's `n`, so shares stay proportions: when every answer
    is that option, both are the same records and so already the same figure. Numeric
    statistics are kept, with noise, only for cells of at least `numbers_from` (perturbed)."""
    n = perturb(tally.n, tally.key)
    counts = {
        option: min(n, perturb(count, tally.keys.get(option, 0)))
        for option, count in tally.counts.items()
    }
    numbers = None
    if tally.numbers is not None or tally.values:
        exact = tally.numbers if tally.numbers is not None else statistics(tally.values, tally.n)
        numbers = noisy_statistics(exact, tally.n, tally.key) if n >= numbers_from else BLANK
    return Tally(n=n, counts=counts, numbers=numbers, complete=tally.complete)


BLANK: dict[str, float | None] = dict.fromkeys(("mean", "median", "stddev", "min", "max"))


def noisy_statistics(exact: dict[str, float | None], n: int, key: int) -> dict[str, float | None]:
    """Mean, median and standard deviation with bounded key-derived noise; no min or max."""
    mean, median, stddev = exact.get("mean"), exact.get("median"), exact.get("stddev")
    error = (stddev or 0.0) / math.sqrt(n)
    shown = dict(BLANK)
    if mean is not None:
        shown["mean"] = mean + STATISTIC_NOISE * error * _uniform(key, "mean")
    if median is not None:
        # The median's standard error is about 1.2533 times the mean's (normal data).
        shown["median"] = median + STATISTIC_NOISE * 1.2533 * error * _uniform(key, "median")
    if stddev is not None:
        relative = STATISTIC_NOISE / math.sqrt(2 * max(n - 1, 1))  # the stddev's standard error
        shown["stddev"] = stddev * (1 + relative * _uniform(key, "stddev"))
    # Rounded: the database's float sums may differ in the last bit with the grouping, and the
    # same cell must show the very same figure in every query.
    return {
        name: None if value is None else round(value, DECIMALS) for name, value in shown.items()
    }
