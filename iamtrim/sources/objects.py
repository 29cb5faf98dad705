"""Trail sources: where trail objects are listed and read, whatever holds them.

A :class:`TrailSource` lists objects (:class:`ObjectRef`: a URI, a size, a modification time and,
where the store has one, an ETag) and reads one object's bytes. ``ingest`` works on objects only,
so incremental ingest (a stored object with the same identity is not read again), deduplication
(by content digest and event id) and the worker lanes behave the same for every source.

* :class:`LocalFiles`: files and folders on disk (the URI is the path as given or found);
* ``iamtrim.sources.s3.S3Trail``: a CloudTrail bucket (the URI is ``s3://bucket/key``);
* tests inject their own (an in-memory source is a dozen lines).

A source may set ``read_ahead = N`` (N > 1): each ingest worker then reads up to N of its objects
ahead of the one it decodes, on threads (for a source that waits on the network; ``S3Trail``
sets 4). Its ``read`` must then be safe to call from several threads.

A source is handed to the ingest's worker processes (forked, or pickled where fork is missing),
so it holds configuration, not open connections: a source that needs a client makes it on
first use in each process.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from iamtrim.sources.files import iter_input_files, read_regular


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One trail object as a source lists it.

    ``(uri, size, mtime_ns, etag)`` is its identity in the store's files table: an object whose
    identity is stored is not read again. Local files have no ETag (``""``) and are known by
    size and modification time; S3 objects by ETag (and their size and LastModified).
    ``error`` is why a listed object cannot be read (it is reported, never read).
    """

    uri: str
    size: int = 0
    mtime_ns: int = 0
    etag: str = ""
    error: str = ""

    def identity(self) -> tuple[str, int, int, str]:
        return (self.uri, self.size, self.mtime_ns, self.etag)


@runtime_checkable
class TrailSource(Protocol):
    """Lists trail objects and reads their bytes (the one interface ``ingest`` reads through)."""

    def list_objects(self) -> Iterator[ObjectRef]:
        """Every object to ingest, in a stable order (the order results are merged in)."""
        ...

    def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
        """The object's bytes ('' error), or no bytes and why; and its identity as read (an
        object replaced since it was listed is stored with the identity of the bytes read)."""
        ...


class LocalFiles:
    """Files and folders on disk (folders recursively, sorted; see ``iter_input_files``)."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = [os.fspath(p) for p in paths]

    def list_objects(self) -> Iterator[ObjectRef]:
        for path, error in iter_input_files(self.paths):
            if error:
                yield ObjectRef(str(path), error=error)
                continue
            try:
                st = path.stat()
            except OSError:  # gone since it was listed: reading it says why
                yield ObjectRef(str(path))
                continue
            yield ObjectRef(str(path), st.st_size, st.st_mtime_ns)

    def read(self, ref: ObjectRef, max_bytes: int) -> tuple[bytes, str, ObjectRef]:
        raw, error = read_regular(ref.uri, max_bytes)
        try:
            st = os.stat(ref.uri)
            if (st.st_size, st.st_mtime_ns) != (ref.size, ref.mtime_ns):  # changed since listed
                ref = replace(ref, size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError:
            pass
        return raw, error, ref


def local_or_source(inputs: Iterable[str | os.PathLike[str] | TrailSource]) -> list[TrailSource]:
    """The sources for ``ingest``'s inputs: consecutive paths become one :class:`LocalFiles`
    (read in the order given), a source is taken as it is."""
    sources: list[TrailSource] = []
    paths: list[str | os.PathLike[str]] = []
    for item in inputs:
        if isinstance(item, str | os.PathLike | Path):
            paths.append(item)
            continue
        if paths:
            sources.append(LocalFiles(paths))
            paths = []
        sources.append(item)
    if paths:
        sources.append(LocalFiles(paths))
    return sources


def read_objects(
    sources: Sequence[TrailSource], items: Iterable[tuple[int, int, ObjectRef]], max_bytes: int
) -> Iterator[tuple[int, tuple[bytes, str, ObjectRef]]]:
    """``(tag, source.read(ref))`` for each ``(tag, source index, ref)`` of *items*, in order.

    A source with ``read_ahead = N`` has up to N of its objects read ahead on threads (an S3
    GetObject is mostly waiting). A source's read error (an AwsError) raises from here, after
    the reads in flight are cancelled or done. Used where a batch of objects is read away from
    ``ingest``'s workers: a Spark partition (``engines.spark``)."""
    todo = list(items)
    ahead = max((getattr(sources[i], "read_ahead", 1) for _, i, _ in todo), default=1)
    if ahead <= 1:
        for tag, i, ref in todo:
            yield tag, sources[i].read(ref, max_bytes)
        return
    pool = ThreadPoolExecutor(max_workers=ahead)
    pending: deque[tuple[int, Future[tuple[bytes, str, ObjectRef]]]] = deque()
    try:
        for tag, i, ref in todo:
            pending.append((tag, pool.submit(sources[i].read, ref, max_bytes)))
            if len(pending) >= ahead:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
