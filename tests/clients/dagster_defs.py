"""The asset graph that dagster_workload.py materializes.

Kept in a module of its own so that `dagster api execute_run` (the run worker of the
`run_worker` mode) can load it from a code pointer, exactly as a Dagster+ agent's run worker
loads user code. Everything here is deterministic: the same runs produce the same events and
metadata on every storage, which is what lets two storages be compared fact by fact.

    shop/raw_orders ──> shop/orders ──> shop/orders_summary   (+ 2 checks on shop/orders)
          └─ - - - - - > shop/daily_sales   (daily partitions, non-loading dependency)
    shop/broken_asset                                             (always raises)
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    DailyPartitionsDefinition,
    Definitions,
    MaterializeResult,
    TableColumn,
    TableColumnConstraints,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
    asset,
    asset_check,
    define_asset_job,
    multiprocess_executor,
)

PREFIX = "shop"

# Partitions the workload materializes: the first three through `materialize()`, the last one
# through the run-worker path (mode `run_worker`).
DAILY = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-08")
MATERIALIZED_PARTITIONS = ["2026-01-01", "2026-01-02", "2026-01-03"]
RUN_WORKER_PARTITION = "2026-01-04"

RAW_ORDERS = [
    {"order_id": 1, "customer": "ada", "amount_cents": 1250},
    {"order_id": 2, "customer": "bob", "amount_cents": 830},
    {"order_id": 3, "customer": "ada", "amount_cents": 4999},
    {"order_id": 4, "customer": "cy", "amount_cents": 120},
    {"order_id": 4, "customer": "cy", "amount_cents": 120},  # duplicate: fails a WARN check
]

ORDERS_SCHEMA = TableSchema(
    columns=[
        TableColumn(
            "order_id",
            "bigint",
            description="order number",
            constraints=TableColumnConstraints(nullable=False),
        ),
        TableColumn("customer", "varchar"),
        TableColumn("amount", "decimal(10,2)", description="amount in currency units"),
    ]
)

SUMMARY_SCHEMA = TableSchema(
    columns=[TableColumn("customer", "varchar"), TableColumn("total", "decimal(12,2)")]
)


def _dep(name, column):
    return TableColumnDep(asset_key=[PREFIX, name], column_name=column)


@asset(key_prefix=PREFIX, group_name="shop", code_version="1", kinds={"python"})
def raw_orders(context: AssetExecutionContext):
    """Source rows; the value goes through the IO manager (HANDLED_OUTPUT / LOADED_INPUT)."""
    context.log.info("generated %d raw orders", len(RAW_ORDERS))
    return MaterializeResult(
        value=RAW_ORDERS,
        metadata={"dagster/row_count": len(RAW_ORDERS), "source": "generated"},
    )


@asset(key_prefix=PREFIX, group_name="shop", code_version="1")
def orders(context: AssetExecutionContext, raw_orders):
    """Typed orders: row count, column schema and column lineage metadata."""
    rows = [
        {"order_id": r["order_id"], "customer": r["customer"], "amount": r["amount_cents"] / 100}
        for r in raw_orders
    ]
    context.log.info("typed %d orders", len(rows))
    return MaterializeResult(
        value=rows,
        metadata={
            "dagster/row_count": len(rows),
            "dagster/column_schema": ORDERS_SCHEMA,
            "dagster/column_lineage": TableColumnLineage(
                deps_by_column={
                    "order_id": [_dep("raw_orders", "order_id")],
                    "customer": [_dep("raw_orders", "customer")],
                    "amount": [_dep("raw_orders", "amount_cents")],
                }
            ),
            "total_amount": sum(r["amount"] for r in rows),
        },
    )


@asset(key_prefix=PREFIX, group_name="shop", code_version="1", pool="warehouse")
def orders_summary(orders):
    """Per-customer totals; the only asset in the `warehouse` concurrency pool."""
    totals = {}
    for r in orders:
        totals[r["customer"]] = round(totals.get(r["customer"], 0) + r["amount"], 2)
    return MaterializeResult(
        value=totals,
        metadata={
            "dagster/row_count": len(totals),
            "dagster/column_schema": SUMMARY_SCHEMA,
            "dagster/column_lineage": TableColumnLineage(
                deps_by_column={
                    "customer": [_dep("orders", "customer")],
                    "total": [_dep("orders", "amount")],
                }
            ),
            "top_customer": max(sorted(totals), key=lambda c: totals[c]),
        },
    )


@asset_check(asset=orders, description="orders is not empty")
def orders_not_empty(orders):
    return AssetCheckResult(passed=len(orders) > 0, metadata={"rows": len(orders)})


@asset_check(asset=orders, description="order ids are unique")
def orders_ids_unique(orders):
    ids = [r["order_id"] for r in orders]
    duplicates = len(ids) - len(set(ids))
    return AssetCheckResult(
        passed=duplicates == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"duplicates": duplicates},
        description=f"{duplicates} duplicate order id(s)",
    )


@asset(
    key_prefix=PREFIX,
    group_name="shop",
    code_version="1",
    partitions_def=DAILY,
    deps=[raw_orders],
)
def daily_sales(context: AssetExecutionContext):
    """One partition per day; the row count depends only on the partition key."""
    day = int(context.partition_key[-2:])
    return MaterializeResult(
        metadata={"dagster/row_count": 10 * day, "day": context.partition_key},
    )


@asset(key_prefix=PREFIX, group_name="shop", code_version="1")
def broken_asset():
    """Always fails: its run ends in FAILURE with one failed step."""
    raise RuntimeError("broken_asset fails on purpose")


UNPARTITIONED = [raw_orders, orders, orders_summary]
CHECKS = [orders_not_empty, orders_ids_unique]

# Jobs the run-worker mode launches through `dagster api execute_run`. The multiprocess
# executor is what a Dagster+ run worker uses by default: every step then runs in its own
# `dagster api execute_step` process, building its own instance from the instance ref.
_executor = multiprocess_executor.configured({"max_concurrent": 2})

orders_job = define_asset_job(
    "orders_job",
    selection=AssetSelection.assets(*UNPARTITIONED),  # the checks on them come along
    executor_def=_executor,
)
daily_sales_job = define_asset_job(
    "daily_sales_job",
    selection=AssetSelection.assets(daily_sales),
    partitions_def=DAILY,
    executor_def=_executor,
)

defs = Definitions(
    assets=[*UNPARTITIONED, daily_sales, broken_asset],
    asset_checks=CHECKS,
    jobs=[orders_job, daily_sales_job],
)
