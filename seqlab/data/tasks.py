"""The task registry: every task seqlab trains on, by name.

Synthetic tasks are values (seqlab.data.synthetic); tasks that read data or options
(text, ListOps, images) are built from config.task by a builder (seqlab.data.text_tasks,
seqlab.data.images).
A new task is a module in seqlab/data/ and one line here.

Re-exports the Task record and the loss so callers need only this module.
"""
from __future__ import annotations

from typing import Callable

from seqlab.data import images, mqar, synthetic, text_tasks
from seqlab.data.task import (EVAL, TRAIN, VALID, Task, loss_and_metrics, per_example,  # noqa: F401
                              rng_for)

TASKS: dict[str, Task] = dict(synthetic.TASKS)

# name -> builder(config.task) -> Task, for tasks that need data or options.
TASK_BUILDERS: dict[str, Callable[..., Task]] = {
    'charlm': text_tasks.charlm_task,
    'textclf': text_tasks.textclf_task,
    'listops': text_tasks.listops_task,
    'mqar': mqar.mqar_task,
    **images.BUILDERS,          # smnist, psmnist, scifar, digits, pdigits
}


def task_names() -> list[str]:
  return list(TASKS) + list(TASK_BUILDERS)


def build(task_config) -> Task:
  """The Task for config.task (its `name` plus any options a builder reads)."""
  name = task_config.name if hasattr(task_config, 'name') else task_config
  if name in TASKS:
    return TASKS[name]
  if name in TASK_BUILDERS:
    return TASK_BUILDERS[name](task_config)
  raise ValueError(f'unknown task {name!r}; allowed: {", ".join(task_names())}')
