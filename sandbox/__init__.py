"""A local Revicom Direct API, faithful to `shared/revicom-api/`, with faults on demand."""
