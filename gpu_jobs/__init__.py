"""GPU inference programs (classifier scoring, rewriting), launched through Dagster Pipes.

They import nothing from Dagster beyond ``dagster-pipes``. None is built yet: see the GPU-jobs issue."""
