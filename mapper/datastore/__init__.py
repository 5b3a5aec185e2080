"""Datastore access: RPCs, transactions, keys, queries, conversion; knows nothing of jobs."""
