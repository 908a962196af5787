"""The refresh job (every asset of one dataset) and a weekly schedule over every catalog dataset."""

from __future__ import annotations

import dagster as dg

from assets.partitions import dataset_partitions

refresh_job = dg.define_asset_job(
    "refresh_dataset",
    selection=dg.AssetSelection.all(),
    partitions_def=dataset_partitions,
    description="Re-ingest, re-encode (cached vectors reused), retrain and re-register one dataset.",
)


@dg.schedule(job=refresh_job, cron_schedule="0 3 * * 1", default_status=dg.DefaultScheduleStatus.STOPPED)
def weekly_refresh(context: dg.ScheduleEvaluationContext):
    """Mondays 03:00: one refresh run per catalog dataset (off until switched on in the UI)."""
    week = context.scheduled_execution_time.strftime("%G-W%V")
    return [
        dg.RunRequest(run_key=f"{partition}-{week}", partition_key=partition)
        for partition in dataset_partitions.get_partition_keys()
    ]
