"""Integer hashing: row i's random draws and keys come from (seed, i) alone, no state."""

from __future__ import annotations

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def mix64(value: int) -> int:
    """SplitMix64's finalizer: a well-spread 64-bit hash of an integer."""
    z = (value * _GOLDEN + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def unit(value: int) -> float:
    """A hash mapped to [0, 1)."""
    return mix64(value) / 18446744073709551616.0


class Permutation:
    """A seeded bijection on `bits`-bit integers, so keys look random yet map back to rows."""

    def __init__(self, bits: int, seed: int) -> None:
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.shift = bits // 2 + 1
        self.mul = (mix64(seed) | 1) & self.mask
        self.add = mix64(seed + 1) & self.mask
        self.inv_mul = pow(self.mul, -1, 1 << bits)

    def forward(self, value: int) -> int:
        """Map row number → key number."""
        x = (value * self.mul + self.add) & self.mask
        x ^= x >> self.shift
        x = (x * self.mul) & self.mask
        return x ^ (x >> self.shift)

    def inverse(self, value: int) -> int:
        """Map key number → row number."""
        x = value ^ (value >> self.shift)  # the shift is over half the width: self-inverse
        x = (x * self.inv_mul) & self.mask
        x ^= x >> self.shift
        return ((x - self.add) * self.inv_mul) & self.mask
