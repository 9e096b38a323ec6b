"""Fault switches and call statistics, one set per stand-in service.

Tests and load runs need the departments to be slow, flaky, down or rate-limited on demand and
repeatably, so every random draw comes from the service's own seeded RNG, never the global one.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter, deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from enrollment.verifiers import VERIFIERS

SERVICES = (*VERIFIERS, "platform")
HOSTILE_MODES = ("bad_json", "wrong_schema", "huge_body", "slow_drip")


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    median_ms: float = Field(ge=0, le=600_000)
    p99_ms: float = Field(ge=0, le=600_000)

    @model_validator(mode="after")
    def _p99_not_below_median(self) -> Latency:
        if self.p99_ms < self.median_ms:
            raise ValueError("p99_ms must not be below median_ms")
        return self


class FaultUpdate(BaseModel):
    """Body of PUT /admin/faults/{service}: any subset; fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")
    latency: Latency | None = None
    error_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    outage: StrictBool = False
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    # Hostile answers: HTTP 200 that must not be trusted (see standins/hostile.py).
    bad_json_rate: float = Field(default=0.0, ge=0, le=1)
    wrong_schema_rate: float = Field(default=0.0, ge=0, le=1)
    huge_body_rate: float = Field(default=0.0, ge=0, le=1)
    slow_drip_rate: float = Field(default=0.0, ge=0, le=1)
    drip_seconds: float = Field(default=30.0, gt=0, le=600)
    seed: int | None = None


class ServiceFaults:
    """Current switches of one service, its RNG, and the sliding window its rate limit counts in."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.config = FaultUpdate()
        self.rng = random.Random(zlib.crc32(self.name.encode()))
        self.admitted: deque[float] = deque()

    def update(self, update: FaultUpdate) -> None:
        changes = {name: getattr(update, name) for name in update.model_fields_set}
        self.config = self.config.model_copy(update=changes)
        if "seed" in changes:
            seed = changes["seed"]
            self.rng = random.Random(zlib.crc32(self.name.encode()) if seed is None else seed)
        if "rate_limit_per_second" in changes:
            self.admitted.clear()

    def as_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def latency_seconds(self) -> float:
        """A log-normal draw with the configured median and 99th percentile (sigma = ln(p99/median)/2.326)."""
        latency = self.config.latency
        if latency is None or latency.median_ms <= 0:
            return 0.0
        sigma = math.log(latency.p99_ms / latency.median_ms) / 2.326 if latency.p99_ms > 0 else 0.0
        return self.rng.lognormvariate(math.log(latency.median_ms), sigma) / 1000

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def hostile_mode(self) -> str | None:
        """The hostile answer drawn for this call, if any: one draw per mode with a rate above 0, in order."""
        for mode in HOSTILE_MODES:
            if self.roll(getattr(self.config, f"{mode}_rate")):
                return mode
        return None

    def admit(self, now: float) -> int | None:
        """None if the call is within the rate limit, else the Retry-After seconds.

        Sliding window: at most floor(limit * W) admitted calls in any W seconds, W = max(1, 1/limit),
        so admitted calls never exceed the limit in any one-second window.
        """
        limit = self.config.rate_limit_per_second
        if limit is None:
            return None
        window = max(1.0, 1.0 / limit)
        allowed = max(1, math.floor(limit * window))
        while self.admitted and self.admitted[0] <= now - window:
            self.admitted.popleft()
        if len(self.admitted) >= allowed:
            return max(1, math.ceil(self.admitted[0] + window - now))
        self.admitted.append(now)
        return None


class ServiceStats:
    """Calls received (including refused ones), answers by code, hostile answers by mode, body bytes
    handed to the network, and the busiest one-second window."""

    def __init__(self) -> None:
        self.total = 0
        self.by_code: Counter[str] = Counter()
        self.hostile: Counter[str] = Counter()
        self.bytes_sent = 0
        self.recent: deque[float] = deque()
        self.peak_per_second = 0

    def arrive(self, now: float) -> None:
        self.total += 1
        self.recent.append(now)
        while self.recent[0] <= now - 1.0:
            self.recent.popleft()
        self.peak_per_second = max(self.peak_per_second, len(self.recent))

    def answered(self, code: str) -> None:
        self.by_code[code] += 1

    def spoiled(self, mode: str) -> None:
        self.hostile[mode] += 1

    def sent(self, size: int) -> None:
        self.bytes_sent += size

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_code": dict(sorted(self.by_code.items())),
            "hostile": dict(sorted(self.hostile.items())),
            "bytes_sent": self.bytes_sent,
            "peak_calls_per_second": self.peak_per_second,
        }
