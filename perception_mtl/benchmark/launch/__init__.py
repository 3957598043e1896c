"""Suite launchers: the runs of a suite executed one after another in this process (`sequential`),
several at once as child processes here (`local`), or as submitit jobs on SLURM or local processes
(`submitit`), each retried after a failure and resumed from its last.pt (`dispatch.py`)."""
