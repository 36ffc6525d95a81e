"""sync_assets: nightly Opportunity sync into Salesforce through Bulk API 2.0, as Dagster assets."""
