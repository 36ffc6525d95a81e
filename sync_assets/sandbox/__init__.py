"""The local Salesforce sandbox: Bulk API 2.0, REST query, limits and OAuth over HTTPS on SQLite."""
