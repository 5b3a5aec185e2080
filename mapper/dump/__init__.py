"""The dump format: files only, no RPC (codec, files, parts, manifest)."""
