"""What the dashboard's pages show, as plain functions over the store (no Streamlit here).

Everything here only reads, so the pages may cache it; what the pages' buttons change (launch,
cancel, resume, delete, import, notes, re-scoring, the findings' queue) and the refresh that marks
runs whose process died as interrupted are in engine/dashboard/actions.py.

Pages wrap these in `st.cache_data` loaders keyed by the workspace path, so every function takes
a `Store` (from `store_at`) and returns DataFrames, dicts or analysis tables small enough to
cache: per-problem summaries are aggregated in SQL, curves and diversity are computed here from
column-limited queries, and sample texts are read one problem at a time.

"A view" of samples is (run_id, kind, step): the evaluation samples of the checkpoint a run saved
at that step (kind "eval"), or the rollouts it trained on at that step (kind "rollout").
"""

from engine.dashboard.analysis import (TRAINING_METRICS, aligned, comparison, curve_samples,
                                       diversity_over_training, diversity_per_problem, k_grid, orm_rerank, orms,
                                       pass_at_k, problem_subset, run_curves, runs_training_curves, unranked)
from engine.dashboard.notes import note_line, problem_notes, sample_note_column
from engine.dashboard.orm import orm_path, orm_version
from engine.dashboard.runs import (ACTIVE, CURVE_COLUMNS, TEXT_COLUMNS, base_checkpoints, checkpoints_table,
                                   default_run, deletion_summary, evaluated_checkpoints, format_seconds,
                                   latest_metrics, probe_table, run_detail, run_label, run_log, run_metrics,
                                   runs_table, start_points, store_at, worker_log_tail)
from engine.dashboard.samples import (PROBLEM_FILTERS, analysis_task, answer_distribution, distinct_texts,
                                      filter_problems, filter_samples, node_label, node_samples, problem_history,
                                      problem_info, problem_samples, problem_table, problems_by_id, run_task,
                                      run_task_options, sample_steps, tree, view_version)
from engine.dashboard.text import literal

__all__ = [
    'TRAINING_METRICS', 'aligned', 'comparison', 'curve_samples', 'diversity_over_training',
    'diversity_per_problem', 'k_grid', 'orm_rerank', 'orms', 'pass_at_k', 'problem_subset', 'run_curves',
    'runs_training_curves', 'unranked', 'note_line', 'problem_notes', 'sample_note_column', 'orm_path', 'orm_version',
    'ACTIVE', 'CURVE_COLUMNS', 'TEXT_COLUMNS', 'base_checkpoints', 'checkpoints_table',
    'default_run', 'deletion_summary', 'evaluated_checkpoints', 'format_seconds',
    'latest_metrics', 'probe_table', 'run_detail', 'run_label', 'run_log', 'run_metrics',
    'runs_table', 'start_points', 'store_at', 'worker_log_tail', 'PROBLEM_FILTERS', 'analysis_task',
    'answer_distribution', 'distinct_texts', 'filter_problems', 'filter_samples', 'node_label', 'node_samples',
    'problem_history', 'problem_info', 'problem_samples', 'problem_table', 'problems_by_id', 'run_task',
    'run_task_options', 'sample_steps', 'tree', 'view_version', 'literal',
]
