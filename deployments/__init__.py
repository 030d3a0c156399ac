"""How tfrelease runs: the Prefect deployments (and prefect.yaml) and the Slack app manifest."""
