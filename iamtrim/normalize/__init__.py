"""record → Usage | Skipped. The hard knowledge lives here, as data tables with a source per row."""

from iamtrim.normalize.actions import prefix_for_source, resolve_actions
from iamtrim.normalize.principal import resolve_principal
from iamtrim.normalize.record import Normalizer, event_time, normalize_record
from iamtrim.normalize.resources import Resolver, resolve_resources

__all__ = [
    "Normalizer",
    "Resolver",
    "event_time",
    "normalize_record",
    "prefix_for_source",
    "resolve_actions",
    "resolve_principal",
    "resolve_resources",
]
