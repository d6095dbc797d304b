"""The engine: the DAG, the planner, the driver that walks it, and the worker that runs one task."""
