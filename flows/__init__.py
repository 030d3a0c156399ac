"""The flows: nightly retrain, release and rollback, each read top to bottom as the story of one run; they only orchestrate tasks."""
