"""A small shop whose data changes with its models: the migrations example (docs/migrations.md)."""
