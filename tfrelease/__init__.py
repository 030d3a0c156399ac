"""The entry points on top: the `tfrelease` command line and the Slack receiver process."""
