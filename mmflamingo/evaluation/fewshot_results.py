"""The results of a few-shot run: summary rows, json, markdown and plot.

A run's summary is ``task``, ``demo_selection``, ``num_support``,
``num_queries`` and ``results``: one row per shot count
(:func:`summarize_trials`). :func:`write_fewshot_results` writes it to the
work dir as ``fewshot_results.json``, ``fewshot_results.md``
(:func:`format_markdown`) and ``fewshot_results.png`` (score against shots,
when matplotlib is installed).
"""
import json
import os
import os.path as osp
from typing import List, Optional

import numpy as np

from .bootstrap import bootstrap_ci, interval_bars

__all__ = ['summarize_trials', 'format_markdown', 'write_fewshot_results']


def summarize_trials(shots: int, trials: List[dict]) -> dict:
    """One shot count's row of the results.

    Args:
        shots (int): The shot count.
        trials (list[dict]): Each trial's ``seed``, ``metrics`` and
            ``sample_scores`` (the per-query scores of the metrics that are
            means over queries).

    Returns:
        dict: ``shots``, ``trials``, the ``mean`` and ``std`` over the
        trials (``np.std``, as OpenFlamingo) and, for the metrics with
        per-query scores, ``ci95``: the 95% bootstrap interval over queries
        and trials (:func:`~.bootstrap.bootstrap_ci`).
    """
    names = list(trials[0]['metrics'])
    values = {n: [t['metrics'][n] for t in trials] for n in names}
    return dict(
        shots=shots,
        trials=trials,
        mean={
            n: float(np.mean(v))
            for n, v in values.items()
        },
        std={
            n: float(np.std(v))
            for n, v in values.items()
        },
        ci95={
            n: list(bootstrap_ci([t['sample_scores'][n] for t in trials]))
            for n in trials[0]['sample_scores']
        })


def format_markdown(summary: dict) -> str:
    """A markdown table: one row per shot count, ``mean ± std`` over the
    trials per metric, and its 95% interval where there is one."""
    names = list(summary['results'][0]['mean'])
    num_trials = len(summary['results'][0]['trials'])
    lines = [
        f"Few-shot {summary['task']} ({summary['demo_selection']} demos, "
        f"{summary['num_queries']} queries, {num_trials} trial(s))", '',
        '| shots | ' + ' | '.join(names) + ' |',
        '|---:|' + '---:|' * len(names)
    ]
    for row in summary['results']:
        cells = []
        for n in names:
            cell = f"{row['mean'][n]:.2f} ± {row['std'][n]:.2f}"
            if n in row.get('ci95', {}):
                low, high = row['ci95'][n]
                cell += f' [{low:.1f}, {high:.1f}]'
            cells.append(cell)
        lines.append(f"| {row['shots']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_fewshot_results(summary: dict, work_dir: str) -> List[str]:
    """Write ``fewshot_results.json`` and ``fewshot_results.md`` (and
    ``fewshot_results.png`` when matplotlib is installed).

    Returns:
        list[str]: The files written.
    """
    os.makedirs(work_dir, exist_ok=True)
    json_file = osp.join(work_dir, 'fewshot_results.json')
    with open(json_file, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    md_file = osp.join(work_dir, 'fewshot_results.md')
    with open(md_file, 'w', encoding='utf-8') as f:
        f.write(format_markdown(summary))
    files = [json_file, md_file]
    plot = _plot(summary, osp.join(work_dir, 'fewshot_results.png'))
    if plot is not None:
        files.append(plot)
    return files


def _plot(summary: dict, path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is optional
        return None
    shots = [r['shots'] for r in summary['results']]
    fig, ax = plt.subplots()
    for name in summary['results'][0]['mean']:
        means = [r['mean'][name] for r in summary['results']]
        # the 95% interval where there is one, else the std over trials
        rows = summary['results']
        if all(name in r.get('ci95', {}) for r in rows):
            errors = interval_bars(means, [r['ci95'][name] for r in rows])
        else:
            errors = [[r['std'][name] for r in rows]] * 2
        ax.errorbar(
            shots, means, yerr=errors, marker='o', capsize=3, label=name)
    ax.set_xlabel('shots')
    ax.set_ylabel('score')
    ax.set_xticks(shots)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)
    return path
