"""Drives a real Dagster process against a storage and writes what Dagster's own APIs report.

The same workload is run once against Dagster's default storage (SQLite under DAGSTER_HOME) and
once against assetlog posing as the Dagster+ API (a DagsterCloudAgentInstance whose GraphQL
storages talk to assetlog); the two facts files must then be equal. Facts are normalized so
that only what must agree between storages is kept: run ids become phase labels, storage ids
and timestamps are dropped, counts, statuses, asset keys, partition keys and metadata remain.

    dagster_workload.py yaml --home DIR --url URL --token TOKEN --deployment NAME
                             [--batch N] [--http]
        write DIR/dagster.yaml for a Dagster+ style server at URL (e.g.
        http://127.0.0.1:PORT/dagster-plus; requests go to URL/graphql, URL/store_events, ...)
    dagster_workload.py run --home DIR --mode materialize|run_worker --out FACTS.json
                            [--batch N] [--http]
        run the workload with DAGSTER_HOME=DIR, then query the instance and write the facts
    dagster_workload.py compare A.json B.json [--storage-neutral] [--ignore PATTERN ...]
        print the differences; exit status 1 when there are any. --storage-neutral leaves out
        the few facts that follow from what a storage class declares it supports (use it to
        compare the default storage with a Dagster+ one); --ignore leaves out more (a glob
        on the fact path, e.g. 'get_run_records/run_worker:*')

Modes:
  materialize  `dagster.materialize()` (in-process executor, runs created client side):
               the unpartitioned graph with its two checks, three partitions of the daily asset,
               one failing asset; then a few writes outside runs (run tags, runless events,
               dynamic partitions).
  run_worker   the same, then the Dagster+ run-worker path: this process creates two runs
               (standing in for the control plane) and executes each in a subprocess with
               `dagster api execute_run <ExecuteRunArgs JSON>`, as an agent's run launcher
               does; the jobs use the multiprocess executor, so each step also runs in its
               own `dagster api execute_step` process.

Event transport knobs of the dagster-cloud client are environment variables, set here for this
process and every subprocess: --batch N sets DAGSTER_EVENT_BATCH_SIZE=N and --http sets
DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP=1. Given to `yaml`, they are saved in DIR/workload-env.json,
which `run` applies before its own flags.

A fact whose API call raises is recorded as {"error": "<exception class>"} so that a comparison
shows where a storage differs instead of stopping at the first failure. Keys starting with "_"
(timings, versions, instance class) are informative and never compared.

Dagster is imported lazily, inside the functions of `run`: `yaml` and `compare` need only the
standard library.
"""

import argparse
import enum
import fnmatch
import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFS_FILE = HERE / "dagster_defs.py"
ENV_FILE_NAME = "workload-env.json"

# Tags whose values are storage ids (pointers to the input's event record): never comparable.
VOLATILE_TAG_PREFIXES = ("dagster/input_event_pointer/",)

# Facts that depend on what a storage class declares it can do rather than on the data: the
# default SQL storages say asset records carry no last observation / last planned run and have
# no get_materialization_count_by_partition, the Dagster+ GraphQL storages say they do. The
# same data is also checked through calls every storage answers (fetch_observations,
# fetch_planned_materializations, materialization_count_by_partition.via_fetch).
# `compare --storage-neutral` leaves these out.
STORAGE_DEPENDENT = (
    "event_log_storage.capabilities",
    "event_log_storage.get_materialization_count_by_partition",
    "get_asset_records*/last_observation",
    "get_asset_records*/last_planned_materialization_run",
)


# --------------------------------------------------------------------------------------------
# yaml: the DagsterCloudAgentInstance configuration
# --------------------------------------------------------------------------------------------


def cloud_instance_yaml(url, token, deployment):
    """dagster.yaml for a Dagster+ style server, as a Dagster+ run worker is configured.

    The storage entries repeat what DagsterCloudAgentInstance.config_defaults() fills in, so the
    file says in full which client classes are in play. user_code_launcher is required by the
    class but never used by runs. Values are JSON-quoted, which YAML reads as plain strings.
    """
    q = json.dumps
    return f"""\
instance_class:
  module: dagster_cloud.instance
  class: DagsterCloudAgentInstance

dagster_cloud_api:
  url: {q(url)}
  agent_token: {q(token)}
  deployment: {q(deployment)}

user_code_launcher:
  module: dagster_cloud.workspace.user_code_launcher
  class: ProcessUserCodeLauncher

run_storage:
  module: dagster_cloud.storage.runs
  class: GraphQLRunStorage
event_log_storage:
  module: dagster_cloud.storage.event_logs
  class: GraphQLEventLogStorage
schedule_storage:
  module: dagster_cloud.storage.schedules
  class: GraphQLScheduleStorage
compute_logs:
  module: dagster_cloud.storage.compute_logs
  class: CloudComputeLogManager
telemetry:
  enabled: false
"""


def transport_env(batch, http):
    env = {}
    if batch:
        env["DAGSTER_EVENT_BATCH_SIZE"] = str(batch)
    if http:
        env["DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP"] = "1"
    return env


def cmd_yaml(args):
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(cloud_instance_yaml(args.url, args.token, args.deployment))
    env_file = home / ENV_FILE_NAME
    env = transport_env(args.batch, args.http)
    if env:
        env_file.write_text(json.dumps(env, indent=1, sort_keys=True) + "\n")
    elif env_file.exists():
        env_file.unlink()
    return 0


# --------------------------------------------------------------------------------------------
# run: the workload
# --------------------------------------------------------------------------------------------


class Workload:
    """Runs the phases and remembers each run id under a stable label (its phase)."""

    def __init__(self, instance):
        self.instance = instance
        self.runs = {}  # label -> run id, in creation order
        self.timings = {}
        self.subprocess_exit_codes = {}

    def _timed(self, label, fn):
        start = time.monotonic()
        result = fn()
        self.timings[label] = round(time.monotonic() - start, 2)
        return result

    def _materialize(self, label, assets, **kwargs):
        import dagster

        result = self._timed(
            label,
            lambda: dagster.materialize(
                assets,
                instance=self.instance,
                raise_on_error=False,
                tags={"workload/phase": label},
                **kwargs,
            ),
        )
        self.runs[label] = result.run_id
        return result

    def run_materialize(self):
        import dagster_defs as d

        self._materialize("materialize:unpartitioned", [*d.UNPARTITIONED, *d.CHECKS])
        for key in d.MATERIALIZED_PARTITIONS:
            self._materialize(f"materialize:partition:{key}", [d.daily_sales], partition_key=key)
        result = self._materialize("materialize:failing", [d.broken_asset])
        assert not result.success, "broken_asset was expected to fail"

    def run_misc_writes(self):
        """Writes outside of runs, as the protocol capture's `writes:misc` phase did."""
        from dagster import AssetKey, AssetMaterialization, AssetObservation

        def writes():
            self.instance.add_run_tags(self.runs["materialize:failing"], {"workload/extra": "1"})
            self.instance.report_runless_asset_event(
                AssetObservation(
                    asset_key=AssetKey(["shop", "raw_orders"]),
                    metadata={"dagster/row_count": 5, "observed_by": "workload"},
                )
            )
            self.instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=AssetKey(["shop", "external_table"]),
                    metadata={"dagster/row_count": 42},
                )
            )
            self.instance.add_dynamic_partitions("regions", ["eu", "us"])

        self._timed("writes:misc", writes)

    def run_run_worker(self):
        import dagster_defs as d

        self._launch_like_agent("run_worker:orders_job", "orders_job")
        self._launch_like_agent(
            f"run_worker:daily_sales_job:{d.RUN_WORKER_PARTITION}",
            "daily_sales_job",
            partition_key=d.RUN_WORKER_PARTITION,
        )

    def _launch_like_agent(self, label, job_name, partition_key=None):
        """Create a run as the control plane would, then run it the way a Dagster+ agent's run
        launcher (dagster_cloud CloudProcessRunLauncher) does: `dagster api execute_run` with a
        serialized ExecuteRunArgs carrying the job's code origin and the instance ref."""
        from dagster._core.definitions.reconstruct import ReconstructableRepository
        from dagster._grpc.types import ExecuteRunArgs

        recon_job = ReconstructableRepository.for_file(
            str(DEFS_FILE), "defs", working_directory=str(HERE)
        ).get_reconstructable_job(job_name)
        tags = {"workload/phase": label}
        if partition_key:
            tags["dagster/partition"] = partition_key
        run = self.instance.create_run_for_job(
            job_def=recon_job.get_definition(),
            tags=tags,
            job_code_origin=recon_job.get_python_origin(),
        )
        self.runs[label] = run.run_id
        args = ExecuteRunArgs(
            job_origin=recon_job.get_python_origin(),
            run_id=run.run_id,
            instance_ref=instance_ref_for_run_worker(self.instance),
        ).get_command_args()
        # The code origin's entry point is the `dagster` command (DEFAULT_DAGSTER_ENTRY_POINT),
        # found on PATH as in an activated environment. execute_run streams its events as JSON
        # lines on stdout; only the exit code matters here.
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        proc = self._timed(
            label,
            lambda: subprocess.run(
                args,
                stdout=subprocess.DEVNULL,
                cwd=str(HERE),
                env=env,
                check=False,
            ),
        )
        self.subprocess_exit_codes[label] = proc.returncode


def instance_ref_for_run_worker(instance):
    """The instance ref an agent hands its run worker: for a Dagster+ instance the agent strips
    agent-only settings (get_instance_ref_for_user_code); other instances pass it as is."""
    ref = instance.get_ref()
    data = ref.custom_instance_class_data
    if data is not None and data.module_name.startswith("dagster_cloud"):
        from dagster_cloud.workspace.user_code_launcher.utils import (
            get_instance_ref_for_user_code,
        )

        ref = get_instance_ref_for_user_code(ref)
    return ref


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------


class Normalizer:
    """Turns Dagster objects into plain JSON values that two storages must agree on."""

    def __init__(self, runs, home):
        self.labels = {run_id: label for label, run_id in runs.items()}
        self.home = str(home)  # appears in IO manager log lines

    def run(self, run_id):
        if not run_id:
            return None  # runless events carry an empty run id
        return self.labels.get(run_id, "<unknown run>")

    def text(self, s):
        for run_id, label in self.labels.items():
            s = s.replace(run_id, f"<run {label}>")
        return s.replace(self.home, "<DAGSTER_HOME>")

    def plain(self, value):
        """Metadata values, table schemas, lineage and other serdes objects → JSON values
        (keeping the serdes class name, which a storage must round-trip)."""
        from dagster import AssetKey
        from dagster._core.definitions.asset_key import AssetCheckKey
        from dagster_shared.serdes import serialize_value

        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (AssetKey, AssetCheckKey)):
            return value.to_user_string()
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {
                str(k): self.plain(v) for k, v in sorted(value.items(), key=lambda i: str(i[0]))
            }
        if isinstance(value, (set, frozenset)):
            return sorted((self.plain(v) for v in value), key=json.dumps)
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return [self.plain(v) for v in value]
        return self.plain(json.loads(serialize_value(value)))

    def metadata(self, metadata):
        return {k: self.plain(v) for k, v in sorted((metadata or {}).items())}

    def tags(self, tags):
        return {
            k: self.text(v)
            for k, v in sorted((tags or {}).items())
            if not k.startswith(VOLATILE_TAG_PREFIXES)
        }

    def event(self, entry):
        """One EventLogEntry (of any type) without ids or timestamps."""
        if entry is None:
            return None
        ev = entry.dagster_event
        out = {"run": self.run(entry.run_id), "step_key": entry.step_key, "level": entry.level}
        if ev is None:
            out["user_message"] = self.text(entry.user_message)
            return out
        out["event_type"] = ev.event_type_value
        if ev.asset_key is not None:
            out["asset_key"] = ev.asset_key.to_user_string()
        if ev.partition is not None:
            out["partition"] = ev.partition
        data = ev.event_specific_data
        asset_event = getattr(data, "materialization", None) or getattr(
            data, "asset_observation", None
        )
        if asset_event is not None:
            out["metadata"] = self.metadata(asset_event.metadata)
            out["tags"] = self.tags(asset_event.tags)
            out["description"] = asset_event.description
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            out["check"] = {
                "key": data.asset_check_key.to_user_string(),
                "passed": data.passed,
                "severity": data.severity.value,
                "description": data.description,
                "metadata": self.metadata(data.metadata),
            }
        return out

    def record(self, record):
        return self.event(record.event_log_entry)


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------


class Facts:
    def __init__(self):
        self.data = {}

    def add(self, key, fn):
        """Record fn()'s result under key, or the class of the exception it raised."""
        try:
            self.data[key] = fn()
        except Exception as exc:  # noqa: BLE001 - the class name is the fact
            self.data[key] = {"error": type(exc).__name__}


def collect_facts(instance, runs, home):
    """Ask Dagster's instance (and its event log storage) everything a storage must answer."""
    from dagster import (
        AssetKey,
        AssetRecordsFilter,
        DagsterEventType,
        DagsterRunStatus,
        EventRecordsFilter,
        RunsFilter,
    )
    from dagster._core.definitions.asset_key import AssetCheckKey

    import dagster_defs as d

    n = Normalizer(runs, home)
    f = Facts()
    els = instance.event_log_storage

    def key(name):
        return AssetKey([d.PREFIX, name])

    asset_names = [
        "raw_orders",
        "orders",
        "orders_summary",
        "daily_sales",
        "broken_asset",
        "external_table",
    ]
    keys = [key(a) for a in asset_names]
    missing = key("never_materialized")
    daily = key("daily_sales")
    check_keys = [
        AssetCheckKey(key("orders"), c) for c in ("orders_not_empty", "orders_ids_unique")
    ]
    all_check_keys = [*check_keys, AssetCheckKey(key("orders"), "no_such_check")]

    # ---- runs ---------------------------------------------------------------------------
    def run_records():
        out = {}
        for rec in instance.get_run_records():
            run = rec.dagster_run
            out[n.run(run.run_id)] = {
                "job_name": run.job_name,
                "status": run.status.value,
                "asset_selection": sorted(k.to_user_string() for k in run.asset_selection or []),
                "asset_check_selection": sorted(
                    k.to_user_string() for k in run.asset_check_selection or []
                ),
                "tags": n.tags(run.tags),
                "parent": n.run(run.parent_run_id),
                "root": n.run(run.root_run_id),
                "has_start_time": rec.start_time is not None,
                "has_end_time": rec.end_time is not None,
                "has_job_code_origin": run.job_code_origin is not None,
            }
        return out

    f.add("get_run_records", run_records)
    f.add(
        "get_run_records.order",
        lambda: [n.run(r.dagster_run.run_id) for r in instance.get_run_records()],
    )
    f.add(
        "get_run_records.ascending.limit2",
        lambda: [
            n.run(r.dagster_run.run_id) for r in instance.get_run_records(limit=2, ascending=True)
        ],
    )
    f.add("get_runs_count", lambda: instance.get_runs_count())
    f.add(
        "get_runs_count.by_status",
        lambda: {
            s.value: instance.get_runs_count(RunsFilter(statuses=[s]))
            for s in (
                DagsterRunStatus.SUCCESS,
                DagsterRunStatus.FAILURE,
                DagsterRunStatus.NOT_STARTED,
            )
        },
    )
    f.add(
        "get_runs.by_job_name",
        lambda: {
            job: [n.run(r.run_id) for r in instance.get_runs(RunsFilter(job_name=job))]
            for job in sorted({r.job_name for r in instance.get_runs()})
        },
    )
    f.add(
        "get_runs.by_tag",
        lambda: [
            n.run(r.run_id)
            for r in instance.get_runs(
                RunsFilter(tags={"dagster/partition": d.MATERIALIZED_PARTITIONS[1]})
            )
        ],
    )
    f.add("get_runs.paged", lambda: paged_runs(instance, n))
    f.add("get_run_ids.limit3", lambda: [n.run(i) for i in instance.get_run_ids(limit=3)])
    f.add(
        "has_run",
        lambda: {
            "known": all(instance.has_run(i) for i in runs.values()),
            "unknown": instance.has_run("00000000-0000-0000-0000-000000000000"),
        },
    )
    f.add(
        "get_run_by_id.status",
        lambda: {label: instance.get_run_by_id(i).status.value for label, i in runs.items()},
    )
    f.add(
        "get_run_tags.workload_phase",
        lambda: [[k, sorted(v)] for k, v in instance.get_run_tags(tag_keys=["workload/phase"])],
    )
    f.add(
        "get_run_tags.partition",
        lambda: [[k, sorted(v)] for k, v in instance.get_run_tags(tag_keys=["dagster/partition"])],
    )
    f.add("get_run_tag_keys", lambda: sorted(instance.get_run_tag_keys()))
    f.add(
        "get_run_group",
        lambda: {
            label: [n.run(root), sorted(n.run(r.run_id) for r in group)]
            for label, (root, group) in (
                (lbl, instance.get_run_group(i)) for lbl, i in runs.items()
            )
        },
    )

    def snapshots():
        out = {}
        for label, run_id in runs.items():
            run = instance.get_run_by_id(run_id)
            job_snap = instance.get_job_snapshot(run.job_snapshot_id)
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            out[label] = {
                # Both ids are sha1 digests of the serialized snapshots: equal on every storage.
                "job_snapshot_id": run.job_snapshot_id,
                "execution_plan_snapshot_id": run.execution_plan_snapshot_id,
                "has_job_snapshot": instance.has_job_snapshot(run.job_snapshot_id),
                "job_snapshot_name": job_snap.name,
                "job_snapshot_ops": sorted(
                    node.node_name for node in job_snap.dep_structure_snapshot.node_invocation_snaps
                ),
                "plan_step_keys": sorted(s.key for s in plan.steps),
                "plan_step_keys_to_execute": sorted(plan.step_keys_to_execute),
            }
        return out

    f.add("snapshots", snapshots)

    # ---- event log per run --------------------------------------------------------------
    def event_types(run_id):
        counts = Counter()
        for entry in instance.all_logs(run_id):
            counts[
                entry.dagster_event.event_type_value if entry.dagster_event else "<log line>"
            ] += 1
        return dict(sorted(counts.items()))

    f.add(
        "all_logs.event_type_counts", lambda: {label: event_types(i) for label, i in runs.items()}
    )

    # In-process runs are written by one process, so the order of their events is fixed too.
    def sequence(run_id):
        return [
            e.dagster_event.event_type_value if e.dagster_event else "<log line>"
            for e in instance.all_logs(run_id)
        ]

    f.add(
        "all_logs.sequence.materialize",
        lambda: {
            label: sequence(i) for label, i in runs.items() if label.startswith("materialize:")
        },
    )
    f.add(
        "all_logs.of_type.materializations",
        lambda: {
            label: [
                n.event(e)
                for e in instance.all_logs(i, of_type=DagsterEventType.ASSET_MATERIALIZATION)
            ]
            for label, i in runs.items()
        },
    )
    f.add(
        "all_logs.user_log_lines",
        lambda: {
            label: sorted(
                n.text(e.user_message) for e in instance.all_logs(i) if e.dagster_event is None
            )
            for label, i in runs.items()
        },
    )
    f.add(
        "get_records_for_run.paged",
        lambda: {label: paged_records_for_run(instance, i) for label, i in runs.items()},
    )
    f.add(
        "get_records_for_run.of_types.step_outcomes",
        lambda: {
            label: sorted(
                n.record(r)["event_type"] + ":" + str(r.event_log_entry.step_key)
                for r in instance.get_records_for_run(
                    i, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
                ).records
            )
            for label, i in runs.items()
        },
    )
    f.add(
        "get_records_for_run.descending.last",
        lambda: {
            label: n.record(instance.get_records_for_run(i, limit=1, ascending=False).records[0])[
                "event_type"
            ]
            for label, i in runs.items()
        },
    )

    # ---- run stats ----------------------------------------------------------------------
    def run_stats(run_id):
        s = instance.get_run_stats(run_id)
        return {
            "steps_succeeded": s.steps_succeeded,
            "steps_failed": s.steps_failed,
            "materializations": s.materializations,
            "expectations": s.expectations,
            "has_start_time": s.start_time is not None,
            "has_end_time": s.end_time is not None,
        }

    f.add("get_run_stats", lambda: {label: run_stats(i) for label, i in runs.items()})

    def step_stats(run_id):
        return {
            s.step_key: {
                "status": s.status.value if s.status else None,
                "materializations": len(s.materialization_events),
                "attempts": len(s.attempts_list),
                "has_start_time": s.start_time is not None,
                "has_end_time": s.end_time is not None,
            }
            for s in instance.get_run_step_stats(run_id)
        }

    f.add("get_run_step_stats", lambda: {label: step_stats(i) for label, i in runs.items()})

    # ---- assets -------------------------------------------------------------------------
    f.add("get_asset_keys", lambda: sorted(k.to_user_string() for k in instance.get_asset_keys()))
    f.add(
        "has_asset_key",
        lambda: {k.to_user_string(): instance.has_asset_key(k) for k in [*keys, missing]},
    )

    def asset_records(asset_keys=None):
        out = {}
        for rec in instance.get_asset_records(asset_keys):
            e = rec.asset_entry
            last = e.last_materialization
            out[e.asset_key.to_user_string()] = {
                "last_materialization": n.event(last)
                and {"run": n.run(last.run_id), "partition": last.dagster_event.partition},
                "last_run": n.run(e.last_run_id),
                "last_observation": n.event(
                    e.last_observation_record.event_log_entry if e.last_observation_record else None
                ),
                "last_planned_materialization_run": n.run(e.last_planned_materialization_run_id),
            }
        return dict(sorted(out.items()))

    f.add("get_asset_records", asset_records)
    f.add("get_asset_records.selected", lambda: asset_records([key("orders"), daily, missing]))
    f.add(
        "get_latest_materialization_events",
        lambda: {
            k.to_user_string(): n.event(v)
            for k, v in sorted(
                instance.get_latest_materialization_events([*keys, missing]).items(),
                key=lambda i: i[0].to_user_string(),
            )
        },
    )
    f.add(
        "get_latest_materialization_event",
        lambda: {
            k.to_user_string(): n.event(instance.get_latest_materialization_event(k)) for k in keys
        },
    )

    def fetch(fetch_fn, records_filter, limit=100, ascending=False):
        res = fetch_fn(records_filter, limit=limit, ascending=ascending)
        return {"events": [n.record(r) for r in res.records], "has_more": res.has_more}

    f.add(
        "fetch_materializations",
        lambda: {
            k.to_user_string(): fetch(instance.fetch_materializations, k) for k in [*keys, missing]
        },
    )
    f.add(
        "fetch_materializations.count",
        lambda: {
            k.to_user_string(): len(instance.fetch_materializations(k, limit=100).records)
            for k in keys
        },
    )
    f.add(
        "fetch_materializations.partition_filter",
        lambda: fetch(
            instance.fetch_materializations,
            AssetRecordsFilter(asset_key=daily, asset_partitions=d.MATERIALIZED_PARTITIONS[1:]),
            ascending=True,
        ),
    )
    f.add(
        "fetch_materializations.paged",
        lambda: paged_fetch(instance.fetch_materializations, daily, n),
    )
    f.add(
        "fetch_observations",
        lambda: {k.to_user_string(): fetch(instance.fetch_observations, k) for k in keys[:2]},
    )
    f.add(
        "fetch_failed_materializations",
        lambda: fetch(instance.fetch_failed_materializations, key("broken_asset")),
    )
    f.add(
        "fetch_planned_materializations",
        lambda: {
            k.to_user_string(): [
                n.run(r.event_log_entry.run_id)
                for r in instance.fetch_planned_materializations(k, limit=100).records
            ]
            for k in keys
        },
    )
    f.add(
        "fetch_run_status_changes",
        lambda: {
            t.value: [
                n.run(r.event_log_entry.run_id)
                for r in instance.fetch_run_status_changes(t, limit=100).records
            ]
            for t in (
                DagsterEventType.RUN_SUCCESS,
                DagsterEventType.RUN_FAILURE,
                DagsterEventType.RUN_START,
            )
        },
    )
    f.add(
        "get_event_records.materializations",
        lambda: [
            n.record(r)
            for r in instance.get_event_records(
                EventRecordsFilter(
                    event_type=DagsterEventType.ASSET_MATERIALIZATION, asset_key=key("orders")
                ),
                limit=100,
            )
        ],
    )
    f.add(
        "get_event_tags_for_asset",
        lambda: sorted(
            (n.tags(t) for t in instance.get_event_tags_for_asset(daily)), key=json.dumps
        ),
    )

    # ---- partitions ---------------------------------------------------------------------
    f.add(
        "get_materialized_partitions",
        lambda: {
            k.to_user_string(): sorted(instance.get_materialized_partitions(k))
            for k in [daily, key("orders")]
        },
    )
    # Dagster+ storage only: the default storages have no such method.
    f.add(
        "event_log_storage.get_materialization_count_by_partition",
        lambda: {
            k.to_user_string(): dict(sorted(v.items()))
            for k, v in els.get_materialization_count_by_partition([daily, key("orders")]).items()
        },
    )
    # The same facts derived from fetch_materializations, which every storage answers.
    f.add(
        "materialization_count_by_partition.via_fetch",
        lambda: {
            k.to_user_string(): dict(
                sorted(
                    Counter(
                        r.event_log_entry.dagster_event.partition or "<none>"
                        for r in instance.fetch_materializations(k, limit=1000).records
                    ).items()
                )
            )
            for k in [daily, key("orders")]
        },
    )
    f.add(
        "event_log_storage.get_latest_storage_id_by_partition",
        lambda: sorted(
            els.get_latest_storage_id_by_partition(daily, DagsterEventType.ASSET_MATERIALIZATION)
        ),
    )
    f.add(
        "event_log_storage.get_latest_tags_by_partition",
        lambda: {
            p: dict(sorted(t.items()))
            for p, t in sorted(
                els.get_latest_tags_by_partition(
                    daily, DagsterEventType.ASSET_MATERIALIZATION, ["dagster/data_version"]
                ).items()
            )
        },
    )
    f.add(
        "event_log_storage.get_latest_planned_materialization_info",
        lambda: {
            p: (lambda info: info and n.run(info.run_id))(
                els.get_latest_planned_materialization_info(daily, p)
            )
            for p in [*d.MATERIALIZED_PARTITIONS, d.RUN_WORKER_PARTITION]
        },
    )
    f.add(
        "event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations",
        lambda: {
            p: n.run(v[0])
            for p, v in sorted(
                els.get_latest_asset_partition_materialization_attempts_without_materializations(
                    daily
                ).items()
            )
        },
    )
    f.add(
        "event_log_storage.get_updated_data_version_partitions",
        lambda: sorted(
            els.get_updated_data_version_partitions(
                daily, [*d.MATERIALIZED_PARTITIONS, d.RUN_WORKER_PARTITION], 0
            )
        ),
    )
    f.add(
        "event_log_storage.get_asset_keys_for_run",
        lambda: {
            label: sorted(k.to_user_string() for k in els.get_asset_keys_for_run(i))
            for label, i in runs.items()
        },
    )
    f.add(
        "event_log_storage.get_asset_partitions_for_run",
        lambda: {
            label: sorted(
                [k.to_user_string(), sorted(p) if p is not None else None]
                for k, p in els.get_asset_partitions_for_run(i).items()
            )
            for label, i in runs.items()
        },
    )

    # ---- asset checks -------------------------------------------------------------------
    def check_execution(rec):
        return {
            "status": rec.status.value,
            "run": n.run(rec.run_id),
            "partition": rec.partition,
            "event": n.event(rec.event),
        }

    f.add(
        "event_log_storage.get_latest_asset_check_execution_by_key",
        lambda: {
            k.to_user_string(): check_execution(v)
            for k, v in sorted(
                els.get_latest_asset_check_execution_by_key(all_check_keys).items(),
                key=lambda i: i[0].to_user_string(),
            )
        },
    )
    f.add(
        "event_log_storage.get_asset_check_execution_history",
        lambda: {
            k.to_user_string(): [
                check_execution(r) for r in els.get_asset_check_execution_history(k, limit=10)
            ]
            for k in check_keys
        },
    )
    f.add(
        "event_log_storage.get_asset_check_summary_records",
        lambda: {
            k.to_user_string(): {
                "last_check_execution": s.last_check_execution_record
                and check_execution(s.last_check_execution_record),
                "last_run": n.run(s.last_run_id),
            }
            for k, s in sorted(
                els.get_asset_check_summary_records(all_check_keys).items(),
                key=lambda i: i[0].to_user_string(),
            )
        },
    )

    # What the storage says it can do: several facts above depend on these.
    f.add(
        "event_log_storage.capabilities",
        lambda: {
            name: getattr(els, name)
            for name in (
                "supports_asset_checks",
                "asset_records_have_last_observation",
                "asset_records_have_last_planned_and_failed_materializations",
                "can_store_asset_failure_events",
                "supports_global_concurrency_limits",
                "supports_partition_subset_in_asset_materialization_planned_events",
                "handles_run_events_in_store_event",
            )
        },
    )

    # ---- everything else --------------------------------------------------------------
    f.add("get_dynamic_partitions", lambda: sorted(instance.get_dynamic_partitions("regions")))
    f.add(
        "has_dynamic_partition",
        lambda: [
            instance.has_dynamic_partition("regions", "eu"),
            instance.has_dynamic_partition("regions", "asia"),
        ],
    )
    f.add("get_backfills", lambda: len(instance.get_backfills()))
    f.add("get_daemon_heartbeats", lambda: sorted(instance.get_daemon_heartbeats()))
    f.add(
        "event_log_storage.get_maximum_record_id.is_int",
        lambda: isinstance(els.get_maximum_record_id(), int),
    )
    return f.data


def paged_runs(instance, n, page_size=2):
    """get_runs with a run-id cursor, page by page."""
    pages, cursor = [], None
    while True:
        page = instance.get_runs(cursor=cursor, limit=page_size)
        if not page:
            return pages
        pages.append([n.run(r.run_id) for r in page])
        cursor = page[-1].run_id


def paged_records_for_run(instance, run_id, page_size=7):
    """get_records_for_run with its string cursor; the total must equal all_logs()."""
    pages, total, cursor = 0, 0, None
    while True:
        res = instance.get_records_for_run(run_id, cursor=cursor, limit=page_size)
        pages += 1
        total += len(res.records)
        cursor = res.cursor
        if not res.has_more:
            break
    return {
        "pages": pages,
        "records": total,
        "equals_all_logs": total == len(instance.all_logs(run_id)),
    }


def paged_fetch(fetch_fn, asset_key, n, page_size=1):
    """fetch_materializations with its cursor, oldest first."""
    out, cursor = [], None
    while True:
        res = fetch_fn(asset_key, limit=page_size, cursor=cursor, ascending=True)
        out.extend(n.record(r).get("partition") for r in res.records)
        cursor = res.cursor
        if not res.has_more:
            return out


def cmd_run(args):
    home = Path(args.home).resolve()
    env = {"DAGSTER_HOME": str(home)}
    env_file = home / ENV_FILE_NAME
    if env_file.exists():
        env.update(json.loads(env_file.read_text()))
    env.update(transport_env(args.batch, args.http))
    os.environ.update(env)  # inherited by the run-worker and step-worker subprocesses

    import dagster
    from dagster import DagsterInstance

    started = time.monotonic()
    instance = DagsterInstance.get()
    workload = Workload(instance)
    workload.run_materialize()
    workload.run_misc_writes()
    if args.mode == "run_worker":
        workload.run_run_worker()
    workload_seconds = time.monotonic() - started

    with warnings.catch_warnings():
        # Deprecated APIs (get_event_records, fetch_planned_materializations) are asked on
        # purpose: the Dagster+ client still implements them.
        warnings.simplefilter("ignore")
        facts = collect_facts(instance, workload.runs, home)
    facts["_meta"] = {
        "mode": args.mode,
        "dagster_version": dagster.__version__,
        "instance_class": type(instance).__name__,
        "run_storage": type(instance.run_storage).__name__,
        "event_log_storage": type(instance.event_log_storage).__name__,
        "environment": {k: v for k, v in env.items() if k != "DAGSTER_HOME"},
        "run_worker_exit_codes": workload.subprocess_exit_codes,
        "seconds": {
            **workload.timings,
            "workload": round(workload_seconds, 2),
            "facts": round(time.monotonic() - started - workload_seconds, 2),
        },
    }
    instance.dispose()
    Path(args.out).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    errors = sorted(k for k, v in facts.items() if isinstance(v, dict) and set(v) == {"error"})
    print(
        f"{args.out}: {len(facts) - 1} facts, {len(workload.runs)} runs, "
        f"workload {workload_seconds:.1f} s; API errors: {', '.join(errors) or 'none'}"
    )
    bad_exits = {k: v for k, v in workload.subprocess_exit_codes.items() if v != 0}
    if bad_exits:
        print(f"run worker exit codes: {bad_exits}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def flatten(value, path, out):
    """Leaf paths of a JSON value; lists are kept whole (their order and length are facts)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(v, f"{path}/{k}" if path else k, out)
    else:
        out[path] = value
    return out


def cmd_compare(args):
    a = json.loads(Path(args.a).read_text())
    b = json.loads(Path(args.b).read_text())
    ignored = tuple(args.ignore or ()) + (STORAGE_DEPENDENT if args.storage_neutral else ())

    def keep(path):
        if path.startswith("_"):
            return False
        return not any(
            fnmatch.fnmatchcase(path, i) or fnmatch.fnmatchcase(path, i + "/*") for i in ignored
        )

    fa = {k: v for k, v in flatten(a, "", {}).items() if keep(k)}
    fb = {k: v for k, v in flatten(b, "", {}).items() if keep(k)}
    diffs = 0
    for path in sorted(set(fa) | set(fb)):
        if path not in fb:
            print(f"- {path}: only in {args.a}: {json.dumps(fa[path])}")
        elif path not in fa:
            print(f"+ {path}: only in {args.b}: {json.dumps(fb[path])}")
        elif fa[path] != fb[path]:
            print(f"! {path}:")
            print(f"    {args.a}: {json.dumps(fa[path])}")
            print(f"    {args.b}: {json.dumps(fb[path])}")
        else:
            continue
        diffs += 1
    facts = len(set(fa) | set(fb))
    print(
        f"{facts} leaf facts compared, {diffs} differ"
        + (f" (ignored: {', '.join(ignored)})" if ignored else "")
    )
    return 1 if diffs else 0


# --------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("yaml", help="write dagster.yaml for a Dagster+ style server")
    p.add_argument("--home", required=True)
    p.add_argument(
        "--url", required=True, help="API base URL, e.g. http://127.0.0.1:PORT/dagster-plus"
    )
    p.add_argument("--token", required=True, help="agent token sent as Dagster-Cloud-Api-Token")
    p.add_argument("--deployment", required=True)
    p.add_argument("--batch", type=int, default=0, help="DAGSTER_EVENT_BATCH_SIZE for later runs")
    p.add_argument(
        "--http", action="store_true", help="DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP for later runs"
    )
    p.set_defaults(fn=cmd_yaml)

    p = sub.add_parser("run", help="run the workload and write the facts")
    p.add_argument("--home", required=True, help="DAGSTER_HOME, containing dagster.yaml")
    p.add_argument("--mode", choices=["materialize", "run_worker"], default="materialize")
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=0, help="set DAGSTER_EVENT_BATCH_SIZE")
    p.add_argument("--http", action="store_true", help="set DAGSTER_CLOUD_STORE_EVENT_OVER_HTTP=1")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("compare", help="compare two facts files")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument(
        "--ignore",
        action="append",
        metavar="PATTERN",
        help="leave out facts whose key/sub/path matches this glob, or lie below it; repeatable",
    )
    p.add_argument(
        "--storage-neutral",
        action="store_true",
        help="leave out facts that depend on the storage class's declared "
        "capabilities (for default storage vs. Dagster+ storage)",
    )
    p.set_defaults(fn=cmd_compare)

    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
