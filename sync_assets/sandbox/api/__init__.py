"""The sandbox's API, transport-free: the router and its OAuth, REST and Bulk API 2.0 resources."""
