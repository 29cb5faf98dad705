"""The time window evidence is taken from (``--since`` / ``--until``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Inclusive bounds, ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), the form the store keeps times in; ``""``
    leaves a side open. The store keeps aggregates, not events: a usage row is in the window when
    its ``[first_seen, last_seen]`` overlaps ``[since, until]``, and then all of its calls count."""

    since: str = ""
    until: str = ""

    @property
    def is_open(self) -> bool:
        """No bound at all: every row is in the window."""
        return not self.since and not self.until

    @property
    def first_day(self) -> str:
        return self.since[:10]

    @property
    def last_day(self) -> str:
        return self.until[:10]

    def overlaps(self, first_seen: str, last_seen: str) -> bool:
        return (not self.since or last_seen >= self.since) and (not self.until or first_seen <= self.until)

    def includes_day(self, day: str) -> bool:
        """Whether the UTC day ``YYYY-MM-DD`` has any second inside the window."""
        return (not self.since or day >= self.first_day) and (not self.until or day <= self.last_day)

    def describe(self) -> str:
        return f"{self.since or 'the first record'} .. {self.until or 'the last record'}"
