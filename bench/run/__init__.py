"""The run: configuration, planning, resources, the cell function, executors, claims and status.

``config`` resolves YAML + presets + CLI into a RunConfig; ``runner`` plans
jobs and runs one job (one fit) into records; ``executors`` decide where jobs
run (local, process pool, SLURM) around one ``CellWorker``; ``claims`` are
the lock files that let several runners share a results folder; ``status``
reads a folder without building models.
"""
