"""Output formats. One module per format; every renderer is deterministic (sorted, stable)."""

from __future__ import annotations

import pkgutil

__all__ = ["review_format_names"]


def review_format_names() -> tuple[str, ...]:
    """The formats of ``iamtrim review``: the ``review_<name>`` modules of this package, found by
    name without importing them (the CLI lists them at start-up), Markdown (the default) first.
    :mod:`iamtrim.render.review` says what such a module defines."""
    names = {m.name[len("review_") :] for m in pkgutil.iter_modules(__path__) if m.name.startswith("review_")}
    return tuple(sorted(names, key=lambda n: (n != "markdown", n)))
