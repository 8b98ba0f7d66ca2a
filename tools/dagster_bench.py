"""Benchmark: Dagster's default SQLite storage vs. assetlog as Dagster's (Dagster+) storage.

Both storages are measured in one process, on the same machine, with their measurements
interleaved so that machine noise affects both alike:

  job runs          `dagster.materialize()` of the unpartitioned graph of
                    tests/clients/dagster_defs.py (shop/raw_orders -> shop/orders ->
                    shop/orders_summary, with the two checks on shop/orders), --job-runs times
                    per storage, in-process executor. Wall time of each run, its median, min
                    and max, and the number of events one run stores.
  store_event_batch `instance.event_log_storage.store_event_batch(batch)` with --batches batches
                    of --batch-size ASSET_MATERIALIZATION events (row count and a column schema
                    in their metadata; one fresh run id per batch). Events per second over the
                    summed call times, and the median latency of one call.

Storages:
  sqlite    a fresh temporary DAGSTER_HOME whose dagster.yaml only disables telemetry, i.e.
            Dagster's default storage (SQLite files under the home).
  assetlog  a fresh temporary DAGSTER_HOME with the DagsterCloudAgentInstance dagster.yaml that
            `tests/clients/dagster_workload.py yaml` writes (GraphQL run, event log and
            schedule storages talking to assetlog's Dagster+ API at --url).

Usage (from the repository root, with the virtualenv that `tools/test` creates):

    .venv-dagster/bin/python tools/dagster_bench.py \\
        --url http://127.0.0.1:PORT/dagster-plus --token AGENT_TOKEN --deployment NAME \\
        [--job-runs 5] [--warmup 1] [--batches 50] [--batch-size 100] [--out results.json]

    .venv-dagster/bin/python tools/dagster_bench.py --serve target/release/assetlog [...]

--serve starts `BINARY serve` itself on a free loopback port with a temporary data directory
(default settings, so fsync before every acknowledgement), creates a deployment and an agent
token through the admin API, runs the benchmark and stops the server. Temporary directories
(both DAGSTER_HOMEs and the server's data) are made where TMPDIR says, so both storages write
to the same disk.

Transport knobs of the dagster-cloud client, applied to this process (and so to both
storages; the SQLite storage ignores the second): --event-batch-size N sets
DAGSTER_EVENT_BATCH_SIZE=N (runs buffer events and store them with store_event_batch), --http
sets DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP=1 (events go to URL/store_events as a compressed
upload instead of a GraphQL mutation).

Reading the store_event_batch figures: SqliteEventLogStorage (dagster 1.13) does not override
store_event_batch, so the base class stores the events one store_event at a time, each with
its own connections and commits; and its first event of a run creates that run's SQLite file
(the default storage keeps one per run), a cost every batch here pays because every batch is a
new run. The dagster-cloud storage sends one request per call, after serializing every event
in the client (part of the measured time).

Runs before the measured ones (--warmup per storage, default 1) pay for lazy imports, the job
snapshot and first connections; their times are kept in the JSON but left out of the figures.
The JSON holds every raw number, the versions of Python, dagster and dagster-cloud, and the
CPU count; no URL, token, host name or path.
"""

import argparse
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIENTS = REPO / "tests" / "clients"
# dagster_defs (the asset graph) and dagster_workload (the dagster.yaml writer) live there.
sys.path.insert(0, str(CLIENTS))

STORAGES = ("sqlite", "assetlog")

# Console logger at ERROR: the runs still store every event (the instance's event log handler
# does not depend on the loggers), but nothing is printed, so terminal speed is not measured.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

BENCH_JOB = "bench_job"
BENCH_PREFIX = "bench"


# --------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------


def sqlite_home(home):
    """A DAGSTER_HOME on Dagster's default storage (SQLite under the home)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def assetlog_home(home, url, token, deployment):
    """A DAGSTER_HOME whose DagsterCloudAgentInstance stores everything in assetlog, written by
    the workload's own `yaml` subcommand (without transport flags: those are set here as
    environment variables instead)."""
    import dagster_workload

    args = ["yaml", "--home", str(home), "--url", url, "--token", token]
    rc = dagster_workload.main([*args, "--deployment", deployment])
    if rc != 0:
        raise RuntimeError(f"dagster_workload.py yaml exited with {rc}")
    return home


def open_instance(home):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(home))


# --------------------------------------------------------------------------------------------
# 1. Job wall time
# --------------------------------------------------------------------------------------------


def run_job(instance):
    """Materialize the unpartitioned graph once; returns (seconds, run id)."""
    import dagster
    import dagster_defs as d

    start = time.perf_counter()
    result = dagster.materialize(
        [*d.UNPARTITIONED, *d.CHECKS],
        instance=instance,
        run_config=QUIET_RUN_CONFIG,
        raise_on_error=False,
    )
    seconds = time.perf_counter() - start
    if not result.success:
        raise RuntimeError(f"run {result.run_id} on {type(instance).__name__} failed")
    return seconds, result.run_id


def bench_jobs(instances, runs, warmup):
    """--warmup + --job-runs rounds; each round runs the job once per storage, the order of the
    storages alternating from round to round (A B, B A, A B, ...)."""
    out = {name: {"warmup_seconds": [], "wall_seconds": [], "run_ids": []} for name in instances}
    for i in range(warmup + runs):
        order = STORAGES if i % 2 == 0 else STORAGES[::-1]
        for name in order:
            seconds, run_id = run_job(instances[name])
            key = "warmup_seconds" if i < warmup else "wall_seconds"
            out[name][key].append(seconds)
            out[name]["run_ids"].append(run_id)
        print(
            f"  job round {i + 1}/{warmup + runs}{' (warm-up)' if i < warmup else ''}: "
            + ", ".join(f"{n} {out[n][key][-1]:.3f} s" for n in STORAGES),
            flush=True,
        )
    for name, instance in instances.items():
        r = out[name]
        # Counted after the timing, through the storage itself: what one run stored.
        counts = [len(instance.all_logs(run_id)) for run_id in r.pop("run_ids")]
        r["events_per_run_all"] = counts  # warm-up runs first
        r["events_per_run"] = counts[-1]
        r.update(summary(r["wall_seconds"]))
    return out


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


# --------------------------------------------------------------------------------------------
# 2. store_event_batch throughput
# --------------------------------------------------------------------------------------------


def column_schema():
    from dagster import TableColumn, TableSchema

    return TableSchema(
        columns=[
            TableColumn("id", "bigint", description="primary key"),
            TableColumn("customer", "varchar"),
            TableColumn("amount", "decimal(10,2)"),
            TableColumn("updated_at", "timestamp"),
        ]
    )


def materialization_entry(run_id, index, timestamp, schema):
    """One ASSET_MATERIALIZATION entry as a step of a real run logs it: the step `table_NNN`
    of bench_job materializes bench/table_NNN with a row count and a column schema."""
    from dagster import AssetKey, AssetMaterialization
    from dagster._core.definitions.dependency import NodeHandle
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.execution.plan.step import StepKind

    step = f"table_{index:03d}"
    key = AssetKey([BENCH_PREFIX, step])
    materialization = AssetMaterialization(
        asset_key=key,
        metadata={"dagster/row_count": 1000 + index, "dagster/column_schema": schema},
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=BENCH_JOB,
        node_handle=NodeHandle(step, parent=None),
        step_kind_value=StepKind.COMPUTE.value,
        event_specific_data=StepMaterializationData(materialization),
        message=f"Materialized value {key.to_user_string()}.",
        pid=os.getpid(),
    )
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message=event.message,
        run_id=run_id,
        timestamp=timestamp,
        step_key=event.step_key,
        job_name=BENCH_JOB,
        dagster_event=event,
    )


def make_batches(count, size, one_run=False):
    """`count` batches of `size` events; each batch has a fresh run id (or, with `one_run`,
    all share one), so no two calls (and no two storages) ever store the same event."""
    schema = column_schema()
    batches = []
    shared = str(uuid.uuid4())
    for _ in range(count):
        run_id = shared if one_run else str(uuid.uuid4())
        now = time.time()
        batches.append(
            [materialization_entry(run_id, i, now + i * 1e-3, schema) for i in range(size)]
        )
    return batches


def bench_store_event_batch(instances, batches, size, one_run=False):
    """Each storage gets its own pre-built batches (building them is not timed). Calls are
    interleaved batch by batch, alternating which storage goes first; the throughput is the
    events stored over the summed call times."""
    work = {name: make_batches(batches, size, one_run) for name in instances}
    seconds = {name: [] for name in instances}
    for i in range(batches):
        order = STORAGES if i % 2 == 0 else STORAGES[::-1]
        for name in order:
            storage = instances[name].event_log_storage
            start = time.perf_counter()
            storage.store_event_batch(work[name][i])
            seconds[name].append(time.perf_counter() - start)
    # Read back through each storage: the last batch's run must hold all of its events.
    for name, instance in instances.items():
        stored = len(instance.all_logs(work[name][-1][0].run_id))
        if one_run:
            stored //= batches
        if stored != size:
            raise RuntimeError(f"{name}: a batch of {size} events came back as {stored}")
    out = {}
    for name in instances:
        total = sum(seconds[name])
        events = batches * size
        out[name] = {
            "event_log_storage": type(instances[name].event_log_storage).__name__,
            "batch_seconds": seconds[name],
            "total_seconds": total,
            "events": events,
            "events_per_second": events / total,
            "median_batch_seconds": statistics.median(seconds[name]),
        }
    return out


# --------------------------------------------------------------------------------------------
# --serve: an assetlog server of our own
# --------------------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


@contextmanager
def served_assetlog(binary, workdir, deployment):
    """Start `binary serve` on a free loopback port with a data directory under workdir, wait
    until it is ready, create `deployment` and an agent token on it; yields (url, token) and
    stops the server (SIGTERM) afterwards. Its log goes to workdir/server.log."""
    data = workdir / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Only the flags configure it: no ASSETLOG_* variable (config file, listen address, ...)
    # of the calling environment leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETLOG_")}
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"assetlog serve exited with {proc.returncode}:\n"
                    + (workdir / "server.log").read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"assetlog serve not ready on {base} after 60 s")
            time.sleep(0.1)
        admin = (data / "admin-token").read_text().strip()
        http_json("POST", f"{base}/api/v1/deployments", admin, {"name": deployment})
        reply = http_json(
            "POST", f"{base}/api/v1/tokens", admin, {"deployment": deployment, "role": "agent"}
        )
        yield f"{base}/dagster-plus", reply["token"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def print_table(results):
    job, bulk, cfg = results["job"], results["store_event_batch"], results["config"]
    rows = [
        (f"job wall time, {cfg['job_runs']} runs (s)", None),
        ("  median", lambda s: job[s]["median"], "{:.3f}"),
        ("  min", lambda s: job[s]["min"], "{:.3f}"),
        ("  max", lambda s: job[s]["max"], "{:.3f}"),
        ("  events per run", lambda s: job[s]["events_per_run"], "{:d}"),
        (f"store_event_batch, {cfg['batches']} x {cfg['batch_size']} events", None),
        ("  events/s", lambda s: bulk[s]["events_per_second"], "{:.0f}"),
        ("  median batch latency (ms)", lambda s: bulk[s]["median_batch_seconds"] * 1e3, "{:.1f}"),
    ]
    width = 40
    print()
    print(f"{'':<{width}}{'sqlite':>12}{'assetlog':>12}{'assetlog/sqlite':>17}")
    for row in rows:
        if row[1] is None:
            print(row[0])
            continue
        label, get, fmt = row
        a, b = get("sqlite"), get("assetlog")
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{label:<{width}}{fmt.format(a):>12}{fmt.format(b):>12}{ratio:>17}")
    print("(ratio below 1: assetlog takes less time; for events/s, above 1: assetlog is faster)")
    print()
    for name in STORAGES:
        times = " ".join(f"{t:.3f}" for t in job[name]["wall_seconds"])
        print(f"{name} run times (s): {times}")


# --------------------------------------------------------------------------------------------


def run(args, url, token, deployment, tmp):
    import dagster

    instances = {}
    with ExitStack() as stack:
        homes = {
            "sqlite": sqlite_home(tmp / "home-sqlite"),
            "assetlog": assetlog_home(tmp / "home-assetlog", url, token, deployment),
        }
        for name in STORAGES:
            instances[name] = stack.enter_context(open_instance(homes[name]))
        print(
            "storages: "
            + ", ".join(f"{n} = {type(instances[n].event_log_storage).__name__}" for n in STORAGES),
            flush=True,
        )

        print(f"job: {args.warmup} warm-up + {args.job_runs} measured runs per storage", flush=True)
        job = bench_jobs(instances, args.job_runs, args.warmup)
        print(f"store_event_batch: {args.batches} batches x {args.batch_size} events", flush=True)
        bulk = bench_store_event_batch(instances, args.batches, args.batch_size, args.one_run)

    from importlib.metadata import version

    return {
        "versions": {
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "dagster": dagster.__version__,
            "dagster_cloud": version("dagster-cloud"),
        },
        "machine": {"cpu_count": os.cpu_count()},
        "config": {
            "job_runs": args.job_runs,
            "warmup": args.warmup,
            "batches": args.batches,
            "batch_size": args.batch_size,
            "event_batch_size": args.event_batch_size,
            "store_events_over_http": args.http,
            "served_by_this_script": bool(args.serve),
        },
        "job": job,
        "store_event_batch": bulk,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server = parser.add_argument_group(
        "assetlog server (either --url, --token and --deployment, or --serve)"
    )
    server.add_argument("--url", help="Dagster+ API base, e.g. http://127.0.0.1:PORT/dagster-plus")
    server.add_argument("--token", help="agent token of the deployment")
    server.add_argument(
        "--deployment", help="deployment name (with --serve it is created; default: bench)"
    )
    server.add_argument(
        "--serve",
        metavar="BINARY",
        help="start BINARY serve on a free loopback port with a temporary data directory, "
        "create the deployment and an agent token, and stop it at the end",
    )
    parser.add_argument("--job-runs", type=int, default=5, help="measured job runs per storage")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured job runs per storage")
    parser.add_argument("--batches", type=int, default=50, help="store_event_batch calls")
    parser.add_argument("--batch-size", type=int, default=100, help="events per call")
    parser.add_argument("--event-batch-size", type=int, default=0, help="DAGSTER_EVENT_BATCH_SIZE")
    parser.add_argument("--http", action="store_true", help="DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP=1")
    parser.add_argument(
        "--one-run",
        action="store_true",
        help="bulk batches all in one run (SQLite keeps one database file per run: a fresh run"
        " per batch makes it create a file per call)",
    )
    parser.add_argument("--out", help="write every raw number to this JSON file")
    args = parser.parse_args(argv)

    if args.serve:
        if args.url or args.token:
            parser.error("--serve starts its own server: give no --url or --token")
        args.deployment = args.deployment or "bench"
    elif not (args.url and args.token and args.deployment):
        parser.error("give --url, --token and --deployment, or --serve BINARY")
    if args.job_runs < 1 or args.batches < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--job-runs, --batches and --batch-size must be >= 1, --warmup >= 0")

    if args.event_batch_size:
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(args.event_batch_size)
    if args.http:
        os.environ["DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP"] = "1"

    tmp = Path(tempfile.mkdtemp(prefix="dagster-bench-"))
    try:
        if args.serve:
            with served_assetlog(args.serve, tmp, args.deployment) as (url, token):
                results = run(args, url, token, args.deployment, tmp)
        else:
            results = run(args, args.url, args.token, args.deployment, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print_table(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        print(f"raw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
