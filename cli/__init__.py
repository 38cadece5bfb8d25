"""The `revicom-dispatch` command line."""
