"""`validate` and `enqueue`: check a JSON Lines file of jobs, and put it on the streams.

Both stream the file, so memory stays bounded whatever its size. `enqueue` is all or nothing:
pass 1 validates every line and writes each valid job's stream form to a temporary spool file
(unnamed, gone when the command ends); only if every line is valid (or --skip-invalid) does
pass 2 read the spool back into pipelined XADDs, without validating again.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Annotated, BinaryIO, NoReturn

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from cli.jobs_file import JobLine, UnreadableFileError, read_job_lines
from config import get_settings
from tasks.keys import Keys
from tasks.producer import Enqueued, NotDurableError, Producer, WireJob, WriteError
from tasks.untrusted import quote

PROGRESS_FROM = 1000  # jobs; smaller files finish before a bar would be read
_READ_BUFFER = 1 << 20

out = Console()
err = Console(stderr=True)

FileArg = Annotated[str, typer.Argument(help="JSON Lines file of jobs, or '-' for standard input.")]


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]{message}[/]", soft_wrap=True)
    raise typer.Exit(code)


def _open(path: str) -> contextlib.AbstractContextManager[BinaryIO]:
    """The file as bytes (standard input's bytes for '-'): lines are decoded one by one."""
    if path == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return Path(path).open("rb", buffering=_READ_BUFFER)
    except OSError as error:
        _fail(f"cannot read {escape(path)}: {error.strerror}", 2)


@dataclass
class Tally:
    valid: int = 0
    invalid: int = 0


def _check(path: str, on_valid: Callable[[JobLine], None] | None = None) -> Tally:
    """Count valid and invalid lines; every error is printed as it is found."""
    tally = Tally()
    max_job_bytes = get_settings().max_job_bytes
    with _open(path) as source:
        try:
            for line in read_job_lines(source, max_job_bytes=max_job_bytes):
                if line.job is None:
                    tally.invalid += 1
                    for text in line.describe_errors():
                        typer.echo(text, err=True)  # one unwrapped line per error, for grep
                else:
                    tally.valid += 1
                    if on_valid is not None:
                        on_valid(line)
        except UnreadableFileError as error:
            _fail(f"cannot read {escape(path)}: {error.strerror}", 2)
    return tally


def validate(file: FileArg) -> None:
    """Check every line against the API's rules; print `line N: field: rule` per error."""
    tally = _check(file)
    out.print(f"{tally.valid} valid, {tally.invalid} invalid")
    if tally.invalid:
        raise typer.Exit(1)


def enqueue(
    file: FileArg,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Enqueue the valid lines even when some are invalid."),
    ] = False,
    ids: Annotated[
        Path | None,
        typer.Option(help="Write one JSON line per job: line, jobId, channelType, entryId."),
    ] = None,
) -> None:
    """Validate the whole file, then put its jobs on the streams.

    If any line is invalid nothing is enqueued (unless --skip-invalid), so the corrected file
    can be enqueued again without sending anything twice.
    """
    with _Spool() as spool:
        tally = _check(file, spool.write)
        if tally.invalid and not skip_invalid:
            err.print(
                f"[red]{tally.invalid} invalid line(s): nothing enqueued[/] (--skip-invalid "
                "enqueues the valid ones)"
            )
            raise typer.Exit(1)
        settings = get_settings()
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        producer = Producer(
            client, Keys(settings.dispatch_key_prefix), max_job_bytes=settings.max_job_bytes
        )
        try:
            client.ping()
        except redis.RedisError as error:
            _fail(f"Redis error after 0 job(s): {escape(quote(str(error), 200))}", 2)
        with _open_ids(ids) as sink:
            per_channel = _Writer(producer, sink, ids).run(spool, tally.valid)
    _summary(per_channel, tally.invalid)
    if tally.invalid:
        raise typer.Exit(1)


class _Spool:
    """Pass 1's valid jobs, one `line TAB channel TAB jobId TAB wire` record a line.

    The wire form is compact JSON (no raw newline) and jobIds are visible ASCII, so the
    record splits back unambiguously. An unnamed temporary file: deleted when closed, or by
    the system if the command dies.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None

    def __enter__(self) -> _Spool:
        try:
            self._file = tempfile.TemporaryFile(prefix="revicom-enqueue-")
        except OSError as error:
            _fail(f"cannot create a temporary file: {error.strerror} (set TMPDIR)", 2)
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, line: JobLine) -> None:
        assert self._file is not None
        assert line.job is not None
        job = line.job
        segments = b"-" if job.segments is None else b"%d" % job.segments
        record = b"%d\t%s\t%s\t%d\t%s\t%s\n" % (
            line.number,
            job.channel.encode(),
            job.jobId.encode(),
            job.stampable,
            segments,
            job.wire,
        )
        try:
            self._file.write(record)
        except OSError as error:
            where = tempfile.gettempdir()
            _fail(f"cannot write the temporary file in {where}: {error.strerror} (set TMPDIR)", 2)

    def records(self) -> Iterator[tuple[int, WireJob]]:
        assert self._file is not None
        try:
            self._file.flush()
            self._file.seek(0)
            for raw in self._file:
                fields = raw.removesuffix(b"\n").split(b"\t", 5)
                number, channel, job_id, stampable, segments, wire = fields
                count = None if segments == b"-" else int(segments)
                record = WireJob(job_id.decode(), channel.decode(), wire, stampable == b"1", count)
                yield int(number), record
        except OSError as error:
            _fail(f"cannot read the temporary file back: {error.strerror}", 2)


def _open_ids(path: Path | None) -> contextlib.AbstractContextManager[IO[str] | None]:
    """Opened before anything is written, so an unwritable path costs nothing."""
    if path is None:
        return contextlib.nullcontext()
    try:
        return path.open("w", encoding="utf-8")
    except OSError as error:
        _fail(f"cannot write {escape(str(path))}: {error.strerror}; nothing enqueued", 2)


class _Writer:
    """Pass 2: the spool into pipelined XADDs, each chunk's ids recorded as it lands."""

    def __init__(self, producer: Producer, sink: IO[str] | None, ids: Path | None) -> None:
        self._producer = producer
        self._sink = sink
        self._ids = ids
        self.per_channel: Counter[str] = Counter()
        self.enqueued = 0

    def run(self, spool: _Spool, total: int) -> Counter[str]:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=total < PROGRESS_FROM,
        ) as progress:
            task = progress.add_task("enqueueing", total=total)
            records = spool.records()
            while chunk := list(islice(records, self._producer.chunk_size)):
                try:
                    written = self._producer.enqueue_wire([record for _, record in chunk])
                except WriteError as partial:
                    self._record(chunk, partial.enqueued)
                    progress.stop()
                    self._refused(partial.error, chunk, len(chunk) - len(partial.enqueued))
                except NotDurableError as undurable:
                    self._record(chunk, undurable.enqueued)
                    progress.stop()
                    _fail(
                        f"{escape(str(undurable))}\n{self.enqueued} job(s) were enqueued "
                        f"({self._listed()}), the last {len(undurable.enqueued)} not confirmed "
                        f"durable; nothing after line {chunk[-1][0]} was written",
                        2,
                    )
                except redis.RedisError as error:
                    progress.stop()
                    self._lost(error, chunk)
                self._record(chunk, written)
                progress.advance(task, len(written))
        return self.per_channel

    def _record(self, chunk: list[tuple[int, WireJob]], written: list[Enqueued]) -> None:
        for result in written:
            self.per_channel[result.channel] += 1
            if self._sink is not None:
                record = {
                    "line": chunk[result.index][0],
                    "jobId": result.jobId,
                    "channelType": result.channel,
                    "entryId": result.entryId,
                }
                self._sink.write(json.dumps(record) + "\n")
        self.enqueued += len(written)
        if self._sink is not None:
            self._sink.flush()

    def _listed(self) -> str:
        if self._ids is None:
            return "--ids would list them"
        return f"{escape(str(self._ids))} lists them"

    def _refused(
        self, error: Exception, chunk: list[tuple[int, WireJob]], refused: int
    ) -> NoReturn:
        """Redis answered every XADD: what landed is known exactly."""
        first, last = chunk[0][0], chunk[-1][0]
        _fail(
            f"Redis error after {self.enqueued} job(s): {escape(quote(str(error), 200))}\n"
            f"{self.enqueued} job(s) were enqueued ({self._listed()}); Redis refused "
            f"{refused} job(s) of lines {first}-{last}; nothing after line {last} was written",
            2,
        )

    def _lost(self, error: Exception, chunk: list[tuple[int, WireJob]]) -> NoReturn:
        """The connection failed before Redis answered: the chunk in flight is unknown."""
        first, last = chunk[0][0], chunk[-1][0]
        _fail(
            f"Redis error after {self.enqueued} job(s): {escape(quote(str(error), 200))}\n"
            f"{self.enqueued} job(s) were enqueued ({self._listed()}); the {len(chunk)} "
            f"job(s) of lines {first}-{last} were being written when the connection failed "
            f"and may or may not be on the streams; nothing after line {last} was written",
            2,
        )


def _summary(per_channel: Counter[str], invalid: int) -> None:
    table = Table(title="enqueued")
    table.add_column("channel")
    table.add_column("jobs", justify="right")
    for channel, count in sorted(per_channel.items()):
        table.add_row(channel, str(count))
    table.add_row("[bold]total[/]", f"[bold]{sum(per_channel.values())}[/]")
    out.print(table)
    if invalid:
        err.print(f"{invalid} invalid line(s) skipped")
