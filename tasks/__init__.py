"""The work of each step (data, validation, training, evaluation, export, serving switch), as plain functions wrapped as Prefect tasks."""
