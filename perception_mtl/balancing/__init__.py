"""Balancer registry: `build_balancer(name, tasks, params)`. One module per method family:

static.py (static, equal), uncertainty.py, dwa.py, famo.py, scalarized.py (rlw, gls, imtl_l),
stch.py, gradnorm.py (gradnorm, gradnorm-rep), graddrop.py, db_mtl.py, aggregators.py (torchjd:
pcgrad, mgda, cagrad, nashmtl, imtl_g, aligned_mtl, upgrad, dualproj, config, fairgrad, gradvac,
excessmtl, pcd, cr_mogm), scale.py (scale-safe torchjd settings), stateful.py (checkpointing
torchjd's stateful aggregators). A new method: a file here with `@BALANCERS.register`
(registry.py), imported below.

Each factory may declare `spaces` (where it combines the tasks: "loss", "parameter",
"representation"; the first is its default) and, through `@variants`, how a setting departs
from the method's paper: `balancer_variant(name, params)` is "" for the paper's form, else a
short label for the leaderboard.
"""
from perception_mtl.balancing import (aggregators, db_mtl, dwa, famo, graddrop, gradnorm,  # noqa: F401  (registration)
                                      scalarized, static, stch, uncertainty)
from perception_mtl.balancing.registry import (BALANCERS, balancer_options, balancer_spaces,  # noqa: F401
                                               balancer_variant, build_balancer)
