"""Column names that the staged files, the loader and its checkpoint share: one definition, one meaning each."""

INTERNAL_PREFIX = "_"
"""Columns whose name starts with this are the sync's own bookkeeping, never sent to Salesforce."""

ROW_HASH = "_row_hash"
"""A staged row's fingerprint of what Salesforce receives (UInt64); the ledger keeps it."""

POSITION = "_position"
"""A row's position in the frame it was read from (UInt32), to find it again after a sort or join."""

EXTERNAL_ID_FIELD = "External_Id__c"
"""The Opportunity field upserts match on; the staged files' key column."""

ACCOUNT_EXTERNAL_ID_FIELD = "Account.External_Id__c"
"""The parent Account, by its external id: the column jobs are cut along (one account, one lock)."""

PARTITION_FIELD = "Sync_Partition__c"
"""The Opportunity text field the sync fills with the partition key, so Salesforce can count one."""

SALESFORCE_ID_FIELD = "Id"
"""The record's Salesforce Id: the only column of a Bulk API 2.0 delete or hardDelete upload."""

FAILURE_COLUMNS = ("error_code", "error", "job_id")
"""What a failed-rows file adds to the row as it was sent: Salesforce's error and the job."""

FAILED_OPERATION = "_operation"
"""In a failed-rows file, the delete mode of a row Salesforce refused to delete (null: an upsert)."""
