"""Benchmarks: the nightly sync against its data floor, its peer tool and Salesforce's own limit."""
