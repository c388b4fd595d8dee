"""Studies over many runs: grids, the sweep (scheduler, workers, progress), result tables,
reports and figures, and the distillation ablation; past one machine, the Ray back-end
(`backends/`) and array-job shares (`shards.py`).

May import: `ser.training`, `ser.data`, `ser.features`, `ser.heads`, `ser.errors`,
`ser.registry` — never `cli`.
"""
