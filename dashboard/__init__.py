"""The release dashboard (``tfrelease ui``): a read-only web app on the registry, its model store and data folders."""
