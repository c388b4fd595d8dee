"""Studies over many runs: grids, the sweep (scheduler, workers, progress), result tables,
reports and figures, and the distillation ablation; past one machine, the Ray back-end
(`backends/`) and array-job shares (`shard.py`, `collect.py`).

May import: `ser.finetune`, `ser.distill`, `ser.inference`, `ser.training`, `ser.data`,
`ser.features`, `ser.heads`, `ser.errors`, `ser.registry` — never `cli`.
"""
