"""Scenario 10: our nights and the peer's through a limited link to the org (bandwidth, round trip).

Every call of a measured client goes through a `LinkProxy` in front of a fresh sandbox: the
client is configured as for a real org with the session flow (`SALESFORCE_INSTANCE_URL` is the
proxy), so no OAuth answer hands it the sandbox's own URL. Per night: wall time, bytes up and down
on the link (the proxy's counts of what crossed it: TLS records, HTTP headers and bodies), the
request and response body bytes and the HTTP requests the sandbox counted (read directly, before
and after), and our loader's own count of API calls.

`LOADER_VARIANTS` are the configurations of our loader measured in one run, each on its own
sandbox and link: the first is the "before", the last the "after", and the report shows each later
one's ratio to the first. The control runs the first variant's nights straight to a sandbox, so
what the link costs is a ratio on the same machine in the same run.
"""

import contextlib
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from benchmarks.fixtures import (
    BASE_DROP,
    Night,
    fresh_sandbox,
    in_drop_order,
    land,
    stage_everything,
    staged_rows,
    write_peer_csv,
)
from benchmarks.link_proxy import LinkModel, LinkProxy, LinkTraffic
from benchmarks.scenarios import (
    Bench,
    NightFigures,
    PeerRun,
    SandboxCounters,
    measure_night,
    peer_batch_size,
    peer_upsert,
    sandbox_counters,
    sandbox_session,
)
from sync_assets.salesforce.connection import DEFAULT_API_VERSION
from sync_assets.sandbox.runner import SandboxHandle

T = TypeVar("T")
ROUND_TRIPS = 10
# A well-formed job id no job has: the sandbox reads the whole upload, then answers 404.
_NO_SUCH_JOB = "7505g00000Zz9ZZAAZ"


class LoaderVariant(BaseModel):
    """One configuration of our loader, measured on its own sandbox and link."""

    name: str = Field(pattern=r"^[a-z0-9-]+$", description="Also names its folders.")
    description: str
    env: dict[str, str] = Field(
        default_factory=dict, description="Added to the night's environment (`SYNC_*` settings)."
    )


# Before, then after: the first is the "before" the others are measured against, the last is
# judged by the targets. Issue 17 item 2: the same nights with plain and with gzip uploads.
LOADER_VARIANTS = [
    LoaderVariant(
        name="plain-upload",
        description="CSV uploads sent as they are",
        env={"SYNC_UPLOAD_COMPRESSION": "none"},
    ),
    LoaderVariant(
        name="gzip-upload",
        description="CSV uploads gzipped (level 1), the default for a real org",
        env={"SYNC_UPLOAD_COMPRESSION": "gzip"},
    ),
]


class LinkScale(BaseModel):
    """The link of one benchmark scale, and the upload that checks the proxy against it."""

    link: LinkModel = Field(default_factory=LinkModel)
    calibration_mb: int = Field(description="An upload of this size times the link's rate.")


LINK_SCALES = {
    "smoke": LinkScale(calibration_mb=10),
    "full": LinkScale(calibration_mb=50),
}


class LinkCalibration(BaseModel):
    """The proxy against its model, through TLS to a sandbox as the nights use it."""

    upload_mb: float
    upload_seconds: float
    upload_model_seconds: float = Field(description="Size ÷ rate up, plus one round trip.")
    round_trip_ms: float = Field(description="Median small request on an open connection.")
    first_request_ms: float = Field(
        description="A new connection: TCP handshake (one round trip), TLS 1.3 handshake (one), "
        "the request (one)."
    )

    @property
    def upload_mbit_per_s(self) -> float:
        return self.upload_mb * 8 / self.upload_seconds


class LinkUse(BaseModel):
    """What one night put through the link, counted by the proxy and by the sandbox."""

    traffic: LinkTraffic
    http_requests: int = Field(description="Answered by the sandbox (its counter), stats excluded.")
    request_body_bytes: int = Field(description="Request bodies as the sandbox read them.")
    response_body_bytes: int = Field(description="Response bodies as sent (after gzip).")
    proxy_cpu_seconds: float

    @property
    def down_per_up(self) -> float:
        return self.traffic.bytes_down / max(1, self.traffic.bytes_up)

    @property
    def body_down_per_up(self) -> float:
        return self.response_body_bytes / max(1, self.request_body_bytes)


class OurLinkNight(BaseModel):
    night: NightFigures
    link: LinkUse

    @property
    def api_calls(self) -> int:
        return sum(run.api_calls for run in self.night.partition_runs)


class VariantNights(BaseModel):
    variant: LoaderVariant
    first: OurLinkNight
    changed: OurLinkNight


class DirectNights(BaseModel):
    """The control: a loader variant's two nights with no link (straight to the sandbox)."""

    variant: LoaderVariant
    first: NightFigures
    changed: NightFigures


class PeerLinkNight(BaseModel):
    rows: int = Field(description="Rows in the CSV handed to the peer.")
    csv_mb: float
    run: PeerRun
    link: LinkUse


class PeerNights(BaseModel):
    defaults_error: str | None = Field(
        description="Set when the peer's defaults failed on the first file: then both nights ran "
        "again, on a fresh sandbox, with batch_size set (about 80 MB of CSV per job)."
    )
    first: PeerLinkNight
    changed: PeerLinkNight | None = Field(description="None when the first night failed.")


class LimitedLinkFigures(BaseModel):
    link: LinkModel
    calibration: LinkCalibration
    changed_fraction: float
    direct: DirectNights = Field(description="The first variant's nights with no link.")
    variants: list[VariantNights]
    peer: PeerNights


class _PeerFile(BaseModel):
    path: Path
    rows: int


def measure_limited_link(
    bench: Bench, variants: list[LoaderVariant] = LOADER_VARIANTS
) -> LimitedLinkFigures:
    """Calibrate the link; the first variant's nights with no link (the control); each variant's
    two nights through the link; the peer's two nights through the link."""
    shutil.rmtree(bench.work / "link", ignore_errors=True)
    link = _link_scale(bench)
    calibration = _calibrate(bench, link)
    direct = _direct_nights(bench, variants[0])
    nights = [_our_nights(bench, variant) for variant in variants]
    changed_id = bench.cache.changed(bench.base, bench.scale.changed_fraction)
    first_file = _peer_file(bench, BASE_DROP)
    changed_file = _peer_file(bench, changed_id)
    return LimitedLinkFigures(
        link=link.link,
        calibration=calibration,
        changed_fraction=bench.scale.changed_fraction,
        direct=direct,
        variants=nights,
        peer=_peer_nights(bench, first_file, changed_file),
    )


def _link_scale(bench: Bench) -> LinkScale:
    return LINK_SCALES[bench.scale.name]


@contextlib.contextmanager
def _linked_sandbox(bench: Bench, name: str) -> Iterator[tuple[SandboxHandle, LinkProxy]]:
    """A fresh sandbox and the link in front of it."""
    with fresh_sandbox(bench.sandbox_dir(name), accounts=bench.scale.accounts) as sandbox:
        address = urlsplit(sandbox.connection.instance_url)
        assert address.hostname is not None and address.port is not None
        with LinkProxy((address.hostname, address.port), _link_scale(bench).link) as proxy:
            yield sandbox, proxy


class _Meter:
    """The link's and the sandbox's counters around one night."""

    def __init__(self, sandbox: SandboxHandle, proxy: LinkProxy) -> None:
        self.sandbox, self.proxy = sandbox, proxy

    def __enter__(self) -> "_Meter":
        self._counters = sandbox_counters(self.sandbox)
        self._traffic, self._cpu = self.proxy.traffic(), self.proxy.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        traffic, cpu = self.proxy.traffic(), self.proxy.cpu_seconds()
        after = sandbox_counters(self.sandbox)
        self.use = LinkUse(
            traffic=traffic.since(self._traffic),
            # The stats call after the night counts itself; the answer before it is counted late.
            http_requests=_grown(self._counters, after, "requests") - 1,
            request_body_bytes=_grown(self._counters, after, "request_body_bytes"),
            response_body_bytes=_grown(self._counters, after, "response_body_bytes")
            - self._counters.answer_bytes,
            proxy_cpu_seconds=cpu - self._cpu,
        )


def _grown(before: SandboxCounters, after: SandboxCounters, name: str) -> int:
    return after.totals.get(name, 0) - before.totals.get(name, 0)


def _calibrate(bench: Bench, scale: LinkScale) -> LinkCalibration:
    """Time a new connection's first request, small requests, and an upload through the link."""
    link, size_mb = scale.link, scale.calibration_mb
    with _linked_sandbox(bench, "link-calibration") as (sandbox, proxy):
        session = sandbox_session(sandbox)
        versions = f"{proxy.url}/services/data"
        first = _timed(lambda: session.get(versions, timeout=60).raise_for_status())
        round_trips = [
            _timed(lambda: session.get(versions, timeout=60).raise_for_status())
            for _ in range(ROUND_TRIPS)
        ]
        upload_url = (
            f"{proxy.url}/services/data/v{DEFAULT_API_VERSION}/jobs/ingest/{_NO_SUCH_JOB}/batches"
        )
        body = b"x" * (size_mb * 1_000_000)
        started = time.perf_counter()
        answer = session.put(
            upload_url, data=body, headers={"Content-Type": "text/csv"}, timeout=600
        )
        upload_seconds = time.perf_counter() - started
        if answer.status_code != 404:
            raise RuntimeError(f"calibration upload: expected 404, got {answer.status_code}")
    return LinkCalibration(
        upload_mb=size_mb,
        upload_seconds=upload_seconds,
        upload_model_seconds=size_mb * 8 / link.up_mbit_per_s + link.rtt_ms / 1000,
        round_trip_ms=statistics.median(round_trips) * 1000,
        first_request_ms=first * 1000,
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _our_nights(bench: Bench, variant: LoaderVariant) -> VariantNights:
    """The first night, then the changed night, of one loader variant through the link."""
    scale = bench.scale
    with _linked_sandbox(bench, f"link-{variant.name}") as (sandbox, proxy):

        def over_link(night: Night, drop_id: str) -> OurLinkNight:
            with _Meter(sandbox, proxy) as meter:
                figures = measure_night(
                    night,
                    sandbox,
                    drop_id,
                    scale.partitions,
                    scale.parallel,
                    instance_url=proxy.url,
                    extra_env=variant.env,
                )
            return OurLinkNight(night=figures, link=meter.use)

        first, changed = _first_and_changed(bench, f"link/{variant.name}", over_link)
    return VariantNights(variant=variant, first=first, changed=changed)


def _direct_nights(bench: Bench, variant: LoaderVariant) -> DirectNights:
    """The same two nights straight to a sandbox: what the link costs, in this run."""
    scale = bench.scale
    with fresh_sandbox(bench.sandbox_dir("link-direct"), accounts=scale.accounts) as sandbox:

        def direct(night: Night, drop_id: str) -> NightFigures:
            return measure_night(
                night, sandbox, drop_id, scale.partitions, scale.parallel, extra_env=variant.env
            )

        first, changed = _first_and_changed(bench, "link/direct", direct)
    return DirectNights(variant=variant, first=first, changed=changed)


def _first_and_changed(bench: Bench, name: str, measure: Callable[[Night, str], T]) -> tuple[T, T]:
    """``measure`` of the first night (the base drop), then of the changed drop, in one state."""
    source = bench.cache.landing(bench.base)
    changed_id = bench.cache.changed(bench.base, bench.scale.changed_fraction)
    night = bench.night(name)
    first = measure(night, land(source, BASE_DROP, night.landing, "night-1"))
    changed = measure(night, land(source, changed_id, night.landing, "night-2-changed"))
    return first, changed


def _peer_file(bench: Bench, drop_id: str) -> _PeerFile:
    """Every valid row of a drop, in export order, as one CSV: what a user hands the peer.

    The peer keeps no state, so its every night sends the whole drop.
    """
    landing = bench.cache.landing(bench.base)
    state = bench.work / "link" / f"peer-state-{drop_id}"
    stage_everything(landing, state, drop_id)
    rows = in_drop_order(landing, drop_id, staged_rows(state, drop_id, bench.scale.partitions))
    path = bench.work / "link" / f"peer-{drop_id}.csv"
    write_peer_csv(rows, path)
    shutil.rmtree(state)
    return _PeerFile(path=path, rows=rows.height)


def _peer_nights(bench: Bench, first: _PeerFile, changed: _PeerFile) -> PeerNights:
    """The peer's two nights with its defaults; if those fail, both again with batch_size."""
    nights = _peer_attempt(bench, first, changed, sized=False)
    if nights.first.run.error is None:
        return nights
    sized = _peer_attempt(bench, first, changed, sized=True)
    return sized.model_copy(update={"defaults_error": nights.first.run.error})


def _peer_attempt(bench: Bench, first: _PeerFile, changed: _PeerFile, sized: bool) -> PeerNights:
    with _linked_sandbox(bench, "link-peer") as (sandbox, proxy):

        def over_link(file: _PeerFile) -> PeerLinkNight:
            batch_size = peer_batch_size(file.rows, file.path) if sized else None
            with _Meter(sandbox, proxy) as meter:
                run = peer_upsert(sandbox, file.path, batch_size, instance_url=proxy.url)
            return PeerLinkNight(
                rows=file.rows,
                csv_mb=file.path.stat().st_size / 1e6,
                run=run,
                link=meter.use,
            )

        first_night = over_link(first)
        changed_night = None if first_night.run.error else over_link(changed)
    return PeerNights(defaults_error=None, first=first_night, changed=changed_night)
