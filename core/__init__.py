"""The bottom layer: settings, how tfrelease reaches Prefect, atomic file writes; imports no other package of tfrelease."""
