"""Checks assetlog's Parquet export with independent readers: pyarrow, DuckDB and polars.

Nothing here uses assetlog code: the data set is generated here, sent over HTTP, and every
expectation is computed from the data set itself; analytic answers are also compared with
what assetlog's GraphQL API says about the same data.

    export_check.py ingest URL TOKEN PART          send part 1 or 2 of the data set
    export_check.py http URL VIEWER OUT            export every table over HTTP and check it
    export_check.py incremental INC_DIR FULL_DIR   the union of an incremental export == a full one

Exit status 0 means every check passed; a failed check raises with a message.
"""

import json
import random
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

BASE = datetime(2026, 11, 1, tzinfo=timezone.utc)
N_ASSETS = 12
N_RUNS = 40
TABLES = [
    "events", "runs", "materializations", "observations", "row_counts",
    "asset_checks", "lineage_edges", "column_schemas", "backfills",
]


def ts(seconds):
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def asset(i):
    return ["wh", f"t{i:02d}"]


def dataset(part):
    """The events of part 1 or 2, deterministic. Part 2 finishes runs part 1 left open,
    adds runs, checks, a schema change and a backfill update."""
    rng = random.Random(7 + part)
    ev = []
    if part == 1:
        ev.append({
            "id": "defs-1", "type": "DEFINITIONS", "timestamp": ts(0), "code_location": "wh",
            "version": "v1",
            "assets": [
                {"asset_key": asset(i), "deps": [asset(i - 1)] if i > 0 else [],
                 "metadata": {"dagster/column_schema": {"type": "table_schema", "columns": [
                     {"name": "id", "type": "bigint", "constraints": {"nullable": False}},
                     {"name": f"v{i}", "type": "double"}]}}}
                for i in range(N_ASSETS)
            ],
            "checks": [{"asset_key": asset(i), "name": "not_empty"} for i in range(N_ASSETS)],
        })
        ev.append({"id": "bf-1", "type": "BACKFILL_CREATED", "timestamp": ts(5),
                   "backfill_id": "bf-1", "asset_selection": [asset(0)],
                   "partition_names": ["2026-10-30", "2026-10-31"]})
    runs = range(0, N_RUNS // 2) if part == 1 else range(N_RUNS // 2, N_RUNS)
    for r in runs:
        run = f"run-{r:03d}"
        t0 = 100 + r * 1000
        tags = {"team": "data"}
        if r % 10 == 0:
            tags["dagster/backfill"] = "bf-1"
        ev.append({"id": f"{run}-start", "type": "RUN_START", "timestamp": ts(t0),
                   "run_id": run, "job_name": "daily", "tags": tags})
        for k in range(3):
            a = (r + k) % N_ASSETS
            t = t0 + 10 + k * 10
            md = {"dagster/row_count": rng.randint(0, 100000), "size_mb": rng.random() * 100}
            part_key = None
            if a % 3 == 0:
                part_key = f"2026-10-{1 + r % 28:02d}"
                md["dagster/partition_row_count"] = rng.randint(0, 5000)
            if a == 5 and k == 0:
                md["dagster/column_lineage"] = {"type": "column_lineage", "deps_by_column": {
                    "v5": [{"asset_key": asset(4), "column_name": "v4"}]}}
            m = {"id": f"{run}-mat-{k}", "type": "ASSET_MATERIALIZATION", "timestamp": ts(t),
                 "run_id": run, "step_key": f"s{a}", "asset_key": asset(a), "metadata": md,
                 "tags": {"dagster/code_version": "cv1"}}
            if part_key:
                m["partition"] = part_key
            ev.append(m)
            ev.append({"id": f"{run}-check-{k}", "type": "ASSET_CHECK_EVALUATION",
                       "timestamp": ts(t + 1), "run_id": run, "asset_key": asset(a),
                       "check_name": "not_empty", "passed": rng.random() < 0.7,
                       "severity": "WARN" if rng.random() < 0.5 else "ERROR"})
        if r % 4 == 1:
            ev.append({"id": f"{run}-obs", "type": "ASSET_OBSERVATION", "timestamp": ts(t0 + 50),
                       "run_id": run, "asset_key": asset(r % N_ASSETS),
                       "metadata": {"dagster/row_count": rng.randint(0, 1000)}})
        ev.append({"id": f"{run}-log", "type": "LOG_MESSAGE", "timestamp": ts(t0 + 60),
                   "run_id": run, "message": f"done with {run}", "level": "INFO"})
        # Runs ending in 7 stay open in part 1; part 2 ends them.
        if part == 1 and r % 10 == 7:
            continue
        end = {"id": f"{run}-end", "type": "RUN_FAILURE" if r % 5 == 3 else "RUN_SUCCESS",
               "timestamp": ts(t0 + 100 + rng.randint(0, 800)), "run_id": run}
        ev.append(end)
    if part == 2:
        for r in range(0, N_RUNS // 2):
            if r % 10 == 7:
                run = f"run-{r:03d}"
                ev.append({"id": f"{run}-end", "type": "RUN_SUCCESS",
                           "timestamp": ts(100 + r * 1000 + 900), "run_id": run})
        ev.append({"id": "mat-schema-2", "type": "ASSET_MATERIALIZATION", "timestamp": ts(99000),
                   "asset_key": asset(1), "metadata": {"dagster/column_schema": {
                       "type": "table_schema", "columns": [
                           {"name": "id", "type": "bigint"},
                           {"name": "v1", "type": "float"}]}}})
        ev.append({"id": "bf-1-done", "type": "BACKFILL_UPDATED", "timestamp": ts(99500),
                   "backfill_id": "bf-1", "status": "COMPLETED_SUCCESS"})
    return ev


def post(url, token, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def get(url, token, path):
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read(), r.headers


def cmd_ingest(url, token, part):
    events = dataset(int(part))
    reply = post(url, token, "/api/v1/events", events)
    assert reply["stored"] == len(events), reply


def expected(events):
    """Every expectation, from the events alone."""
    e = {}
    e["events"] = len(events)
    mats = [x for x in events if x["type"] == "ASSET_MATERIALIZATION"]
    e["mats"] = {x["id"]: x for x in mats}
    e["observations"] = sum(1 for x in events if x["type"] == "ASSET_OBSERVATION")
    rc = 0
    latest = {}
    for x in events:
        if x["type"] in ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION"):
            md = x.get("metadata", {})
            if "dagster/row_count" in md:
                rc += 1
                k = "/".join(x["asset_key"])
                if k not in latest or x["timestamp"] > latest[k][0]:
                    latest[k] = (x["timestamp"], md["dagster/row_count"])
            if "dagster/partition_row_count" in md and x.get("partition"):
                rc += 1
    e["row_counts"] = rc
    e["latest_row_count"] = {k: v[1] for k, v in latest.items()}
    runs = {}
    for x in events:
        if x["type"].startswith("RUN_"):
            r = runs.setdefault(x["run_id"], {"status": "STARTED"})
            if x["type"] == "RUN_START":
                r["start"] = x["timestamp"]
            else:
                r["status"] = x["type"][4:]
                r["end"] = x["timestamp"]
    e["runs"] = runs
    checks = {}
    for x in events:
        if x["type"] == "ASSET_CHECK_EVALUATION":
            c = checks.setdefault("/".join(x["asset_key"]), [0, 0])
            c[0] += 1
            c[1] += 0 if x["passed"] else 1
    e["check_failure_rate"] = {k: f / n for k, (n, f) in checks.items()}
    e["checks"] = sum(n for n, _ in checks.values())
    edges = 0
    for x in events:
        if x["type"] == "DEFINITIONS":
            edges += sum(len(a.get("deps", [])) for a in x["assets"])
        if x["type"] == "ASSET_MATERIALIZATION":
            cl = x.get("metadata", {}).get("dagster/column_lineage")
            if cl:
                edges += sum(len(d) for d in cl["deps_by_column"].values())
    e["lineage_edges"] = edges
    return e


def parse_ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def quantile(values, q):
    """Linear interpolation between closest ranks (DuckDB quantile_cont, polars 'linear')."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def graphql(url, token, query, variables=None):
    out = post(url, token, "/graphql", {"query": query, "variables": variables or {}})
    assert "errors" not in out, out["errors"]
    return out["data"]


def graphql_answers(url, token):
    """The same analytic facts, as assetlog's GraphQL API answers them."""
    keys = graphql(url, token, "{ assets(limit: 1000) { nodes { key } } }")["assets"]["nodes"]
    latest, rate = {}, {}
    for node in keys:
        a = graphql(url, token, """query($k: [String!]!) { asset(key: $k) { key
            rowCounts(limit: 1000) { value }
            checks { name executions(limit: 1000) { status } } } }""", {"k": node["key"]})["asset"]
        k = "/".join(a["key"])
        if a["rowCounts"]:
            latest[k] = int(a["rowCounts"][-1]["value"])
        ex = [e for c in a["checks"] for e in c["executions"]]
        if ex:
            rate[k] = sum(1 for e in ex if e["status"] == "FAILED") / len(ex)
    runs = graphql(url, token, """{ runs(limit: 1000) { nodes { runId status startTime
        endTime } } }""")["runs"]["nodes"]
    durations = {r["runId"]: r["endTime"] - r["startTime"] for r in runs
                 if r["startTime"] is not None and r["endTime"] is not None}
    return latest, rate, durations, {r["runId"]: r["status"] for r in runs}


def cmd_http(url, token, out):
    out = Path(out)
    events = dataset(1) + dataset(2)
    exp = expected(events)
    for t in TABLES:
        body, headers = get(url, token, f"/api/v1/export/{t}.parquet")
        assert headers["Content-Type"] == "application/vnd.apache.parquet", headers
        assert int(headers["Assetlog-Since"]) == 0
        (out / t).mkdir(parents=True, exist_ok=True)
        (out / t / f"{t}.parquet").write_bytes(body)
    p = lambda t: str(out / t / f"{t}.parquet")

    # --- pyarrow: types, row counts, values ---
    ev = pq.read_table(p("events"))
    schema = ev.schema
    assert str(schema.field("timestamp").type) == "timestamp[us, tz=UTC]", schema
    assert str(schema.field("seq").type) == "int64"
    assert str(schema.field("asset_key").type).startswith("list<"), schema
    assert ev.num_rows == exp["events"], (ev.num_rows, exp["events"])
    assert set(ev.column("deployment").to_pylist()) == {"analytics"}, "another tenant's events"
    seqs = ev.column("seq").to_pylist()
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    meta = pq.read_metadata(p("events"))
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics is not None
    assert meta.metadata[b"assetlog.table"] == b"events"

    mats = pq.read_table(p("materializations")).to_pylist()
    assert len(mats) == len(exp["mats"]), (len(mats), len(exp["mats"]))
    for m in mats:
        src = exp["mats"][m["event_id"]]
        assert m["asset_key"] == src["asset_key"]
        assert m["asset_key_str"] == "/".join(src["asset_key"])
        assert m["partition"] == src.get("partition")
        assert m["run_id"] == src.get("run_id")
        assert m["row_count"] == src["metadata"].get("dagster/row_count")
        assert m["code_version"] == src.get("tags", {}).get("dagster/code_version")
        assert m["timestamp"] == parse_ts(src["timestamp"]), (m["timestamp"], src["timestamp"])
        md = json.loads(m["metadata_json"])
        assert set(md) == set(src["metadata"]), (md, src["metadata"])
    assert pq.read_table(p("observations")).num_rows == exp["observations"]
    assert pq.read_table(p("row_counts")).num_rows == exp["row_counts"]
    assert pq.read_table(p("asset_checks")).num_rows == exp["checks"]
    assert pq.read_table(p("lineage_edges")).num_rows == exp["lineage_edges"]
    runs = {r["run_id"]: r for r in pq.read_table(p("runs")).to_pylist()}
    assert set(runs) == set(exp["runs"]), (set(runs) ^ set(exp["runs"]))
    for rid, r in exp["runs"].items():
        assert runs[rid]["status"] == r["status"], (rid, runs[rid]["status"], r)
        if "end" in r:
            d = (parse_ts(r["end"]) - parse_ts(r["start"])).total_seconds()
            assert close(runs[rid]["duration_seconds"], d), (rid, runs[rid], d)
    bf = pq.read_table(p("backfills")).to_pylist()
    assert len(bf) == 1 and bf[0]["status"] == "COMPLETED_SUCCESS", bf
    assert bf[0]["runs_total"] == sum(1 for r in range(N_RUNS) if r % 10 == 0), bf
    schemas = pq.read_table(p("column_schemas")).to_pylist()
    t01 = [s for s in schemas if s["asset_key_str"] == "wh/t01"]
    assert sorted({s["version"] for s in t01}) == [1, 2], t01
    assert [s["column_type"] for s in t01 if s["is_current"]] == ["bigint", "float"], t01

    # --- the analytic questions, three ways, against GraphQL and the data set ---
    g_latest, g_rate, g_dur, g_status = graphql_answers(url, token)
    assert g_latest == exp["latest_row_count"], (g_latest, exp["latest_row_count"])
    con = duckdb.connect()
    d_latest = dict(con.execute(f"""
        select asset_key_str, arg_max(row_count, timestamp)
        from read_parquet('{p("row_counts")}') where label = 'dagster/row_count'
        group by 1""").fetchall())
    pl_latest = dict(
        pl.read_parquet(p("row_counts")).filter(pl.col("label") == "dagster/row_count")
        .sort(["timestamp", "seq"]).group_by("asset_key_str").agg(pl.col("row_count").last())
        .iter_rows())
    assert d_latest == g_latest == pl_latest, (d_latest, g_latest, pl_latest)

    d_rate = dict(con.execute(f"""
        select asset_key_str, avg(case when status = 'FAILED' then 1.0 else 0.0 end)
        from read_parquet('{p("asset_checks")}') group by 1""").fetchall())
    pl_rate = dict(
        pl.read_parquet(p("asset_checks")).group_by("asset_key_str")
        .agg((pl.col("status") == "FAILED").mean()).iter_rows())
    for k, v in exp["check_failure_rate"].items():
        assert close(d_rate[k], v) and close(pl_rate[k], v) and close(g_rate[k], v), \
            (k, d_rate[k], pl_rate[k], g_rate[k], v)
    assert set(d_rate) == set(g_rate) == set(exp["check_failure_rate"])

    g_status_exp = {k: v["status"] for k, v in exp["runs"].items()}
    assert g_status == g_status_exp, (g_status, g_status_exp)
    durations = list(g_dur.values())
    for q in (0.5, 0.9, 0.99):
        want = quantile(durations, q)
        d_q = con.execute(f"""select quantile_cont(duration_seconds, {q})
            from read_parquet('{p("runs")}') where duration_seconds is not null""").fetchone()[0]
        pl_q = pl.read_parquet(p("runs")).select(
            pl.col("duration_seconds").drop_nulls().quantile(q, interpolation="linear")).item()
        arrow_q = quantile([x for x in pq.read_table(p("runs")).column("duration_seconds")
                            .to_pylist() if x is not None], q)
        assert close(d_q, want) and close(pl_q, want) and close(arrow_q, want), \
            (q, d_q, pl_q, arrow_q, want)

    # --- an incremental range over HTTP adds up to the whole ---
    last = int(headers["Assetlog-Until"])
    mid = last // 2
    a, ha = get(url, token, f"/api/v1/export/events.parquet?until={mid}")
    b, hb = get(url, token, f"/api/v1/export/events.parquet?since={mid}")
    (out / "a.parquet").write_bytes(a)
    (out / "b.parquet").write_bytes(b)
    n = con.execute(f"""select count(*) from (select * from read_parquet(['{out / "a.parquet"}',
        '{out / "b.parquet"}']) except all select * from read_parquet('{p("events")}'))""").fetchone()[0]
    total = con.execute(f"""select count(*) from read_parquet(['{out / "a.parquet"}',
        '{out / "b.parquet"}'])""").fetchone()[0]
    assert n == 0 and total == ev.num_rows, (n, total, ev.num_rows)
    print(f"ok: {ev.num_rows} events, {len(mats)} materializations, {len(runs)} runs checked "
          "with pyarrow, DuckDB and polars")


def cmd_incremental(inc, full):
    inc, full = Path(inc), Path(full)
    m = json.loads((inc / "manifest.json").read_text())
    assert len(m["exports"]) == 2, m["exports"]
    first, second = m["exports"]
    assert first["since"] == 0 and second["since"] == first["until"], m["exports"]
    assert m["until"] == second["until"] == json.loads((full / "manifest.json").read_text())["until"]
    con = duckdb.connect()
    for t in TABLES:
        info = m["tables"][t]
        union = f"read_parquet('{inc / t}/*.parquet')"
        whole = f"read_parquet('{full / t}/*.parquet')"
        files = sorted((inc / t).glob("*.parquet"))
        assert len(files) == 2, files
        if info["kind"] == "append":
            cols = "*"
            left = f"select * from {union}"
        else:
            # The current rows of each entity: those of the latest export that touched it.
            ent = ", ".join(info["entity"])
            cols = "* exclude (as_of_seq)"
            left = (f"select {cols} from {union} qualify as_of_seq = "
                    f"max(as_of_seq) over (partition by {ent})")
        right = f"select {cols} from {whole}"
        extra = con.execute(f"select count(*) from ({left} except all {right})").fetchone()[0]
        missing = con.execute(f"select count(*) from ({right} except all {left})").fetchone()[0]
        n = con.execute(f"select count(*) from ({right})").fetchone()[0]
        assert extra == 0 and missing == 0, (t, extra, missing)
        assert n > 0, (t, "empty table proves nothing")
        if info["kind"] == "append":
            rows = con.execute(f"select count(*) from {union}").fetchone()[0]
            distinct = con.execute(f"select count(*) from (select distinct * from {union})").fetchone()[0]
            assert rows == distinct == n, (t, "duplicates in the union", rows, distinct, n)
    # Polars reads the union the same way.
    n = pl.read_parquet(str(inc / "events" / "*.parquet")).height
    assert n == m["until"], (n, m["until"])
    print(f"ok: incremental union equals the full export for {len(TABLES)} tables")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"ingest": cmd_ingest, "http": cmd_http, "incremental": cmd_incremental}[cmd](*args)
