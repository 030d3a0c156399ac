"""The registry, the single source of truth: versions, aliases, lifecycle, the append-only audit log, leases and posted messages."""
