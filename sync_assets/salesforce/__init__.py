"""Salesforce client side: verified HTTPS sessions, the resource and the Bulk API 2.0 loader."""
