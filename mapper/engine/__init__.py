"""The job engine: jobs, shards, slices, their records, and the adapter to a user's Mapper."""
