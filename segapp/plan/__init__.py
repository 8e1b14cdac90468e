"""Budget-aware run planning: from a dataset folder and a wall-clock budget to a segapp config.

``segapp fit --config configs/auto.yaml --data.root DIR --budget 40m`` fingerprints the data
(:mod:`~segapp.plan.fingerprint`), times a few real training steps of the candidate settings on
this machine (:mod:`~segapp.plan.timing`), picks the settings the budget allows by written rules
(:mod:`~segapp.plan.rules`, reasons and evidence in docs/planner.md), writes ``plan.yaml`` (a
normal config), ``plan.md`` and ``plan.json`` to the run folder (:mod:`~segapp.plan.writer`) and
trains it, printing its progress against the budget each epoch (:mod:`~segapp.plan.progress`).
The rules, fingerprint and budget parsing use no Lightning; :mod:`~segapp.plan.apply` is the glue
the app calls.
"""
