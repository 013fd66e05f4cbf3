"""The whole Flamingo recipe in miniature, on the procedurally generated
shapes world: ``python tools/shapes_recipe.py`` (or, from a fresh clone,
``bash tools/run_shapes_recipe.sh``, which sets up the environment first).

Flamingo bridges two pretrained parts, a vision encoder and an in-context
learning language model. In the miniature they are a tiny CLIP and a tiny
LLaMA trained on the world, shipped in ``checkpoints/shapes/{vision,lm}``;
``--from-scratch`` makes them again. Stages, each reusing its output when a
previous run finished it:

0. the world (``tools/misc/make_shapes_world.py``);
1. ``--from-scratch`` only: a byte-level BPE tokenizer of the world's text
   (with ``<image>`` and ``<|endofchunk|>``), a tiny CLIP trained
   contrastively (``configs/shapes/clip-tiny_shapes_contrastive.py``) and a
   tiny LLaMA trained first to copy random spans (its induction heads,
   ``configs/shapes/llama-tiny_shapes_lm-induction.py``), then on the
   world's text (``...lm-text.py``), on binding episodes alone, until it
   binds names its context reveals (``...lm-binding.py``), and on the
   world's text again (``...lm.py``);
2. the LM's probes (:mod:`mmflamingo.shapes_world.probes`): copying,
   text-only binding and reading, on held-out text;
3. Flamingo on the mixture of interleaved documents, pairs and videos
   (``configs/shapes/flamingo-tiny_shapes_mixture.py``), seeded with
   ``--train-seed``, published to ``flamingo-tiny_shapes.pth``;
4. few-shot evaluation on held-out data, random and RICES demos:
   captioning (CIDEr), VQA (VQA accuracy), in-context binding (accuracy;
   chance is 1 / the names of an episode) and video question answering.

Every stage is the real tool (``tools/train.py``, ``tools/test.py``,
``tools/cache_rices_features.py``) on a config, run in this process to pay
the import time once. The results table (means over trials with 95%
bootstrap intervals over queries and trials) is printed and written with a
score-vs-shots plot to ``WORK_DIR/results.{md,json,png}``.

``--quick`` runs every stage for a few iterations on a tiny world (for
tests); its numbers mean nothing.
"""
import argparse
import gc
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# task -> (config, headline metric)
TASKS = dict(
    caption=('configs/shapes/flamingo-tiny_shapes_fewshot-caption.py',
             'caption/CIDEr'),
    vqa=('configs/shapes/flamingo-tiny_shapes_fewshot-vqa.py', 'vqa/accuracy'),
    binding=('configs/shapes/flamingo-tiny_shapes_fewshot-binding.py',
             'classification/accuracy/top1'),
    video=('configs/shapes/flamingo-tiny_shapes_fewshot-video.py',
           'vqa/accuracy'))
SELECTIONS = ('random', 'rices')
SHIPPED = dict(
    vision=osp.join('checkpoints', 'shapes', 'vision'),
    lm=osp.join('checkpoints', 'shapes', 'lm'))
# a pair of tokens is merged only if it occurs this often in the world's
# text: the syllables of the names do, no pair of them (a name) does
MIN_MERGE_FREQUENCY = 10
# the LM's stages, in order: each trains on the previous one's export
LM_STAGES = ('lm-induction', 'lm-text', 'lm-binding', 'lm')
STAGES = ('world', 'tokenizer', 'vision', *LM_STAGES, 'flamingo', 'eval')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--data-root', default='data/shapes', help='where the world goes')
    parser.add_argument(
        '--work-dir', default='work_dirs/shapes', help='where stages write')
    parser.add_argument('--seed', type=int, default=0, help='world seed')
    parser.add_argument(
        '--train-seed',
        type=int,
        default=0,
        help="seed of Flamingo's training (initialisation, data order)")
    parser.add_argument(
        '--from-scratch',
        action='store_true',
        help='train the vision encoder and the LM too, instead of using '
        f'the shipped ones ({SHIPPED["vision"]}, {SHIPPED["lm"]})')
    parser.add_argument(
        '--export-pretrained',
        action='store_true',
        help='with --from-scratch: copy the trained vision encoder and LM '
        'over the shipped ones')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='a few iterations per stage on a tiny world (tests)')
    parser.add_argument(
        '--redo',
        nargs='+',
        default=[],
        choices=list(STAGES),
        help='run these stages even if finished (later stages too)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='overrides of the Flamingo training config, as tools/train.py '
        'takes them (e.g. train_cfg.max_iters=2000)')
    args = parser.parse_args(argv)
    if args.export_pretrained and not args.from_scratch:
        parser.error('--export-pretrained needs --from-scratch')
    return args


def load_tool(path: str):
    """Import ``tools/...py`` as a module (tools are not a package)."""
    name = 'mmflamingo_tool_' + osp.splitext(path)[0].replace('/', '_')
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name,
                                                      osp.join(ROOT, path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


class Recipe:
    """The stages, their outputs and what overrides ``--quick`` adds."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = args.data_root
        self.work = args.work_dir
        self.redo = set(args.redo)
        self.timings: Dict[str, float] = {}
        self.rices_files: List[str] = []  # written by this run
        self.paths = dict(
            tokenizer=osp.join(self.work, 'tokenizer'),
            vision=osp.join(self.work, 'vision', 'hf'),
            **{stage: osp.join(self.work, stage, 'hf')
               for stage in LM_STAGES},
            flamingo=osp.join(self.work, 'flamingo'),
            checkpoint=osp.join(self.work, 'flamingo',
                                'flamingo-tiny_shapes.pth'),
            rices=osp.join(self.work, 'rices'),
            eval=osp.join(self.work, 'eval'))
        if not args.from_scratch:
            self.paths.update(SHIPPED)

    # ------------------------------------------------------------ helpers
    def options(self, stage: str) -> List[str]:
        """``--cfg-options`` pointing a stage at this run's paths."""
        p, d = self.paths, self.data
        dataset = 'train_dataloader.dataset'
        opts = {
            'vision': [
                f'model.tokenizer.pretrained={p["tokenizer"]}',
                f'{dataset}.data_root={d}',
                f'custom_hooks.0.out_dir={p["vision"]}',
            ],
            **{
                stage: [
                    f'model.tokenizer.pretrained={p["tokenizer"]}',
                    f'{dataset}.data_root={d}',
                    f'{dataset}.tokenizer.pretrained={p["tokenizer"]}',
                    f'custom_hooks.0.out_dir={p[stage]}',
                ] + ([f'model.pretrained={p[LM_STAGES[i - 1]]}'] if i else [])
                for i, stage in enumerate(LM_STAGES)
            },
            'flamingo':
            self.model_options() + [
                f'randomness.seed={self.args.train_seed}',
                *self.args.cfg_options,
            ] + [
                f'train_dataloader.datasets.{name}.dataset.{key}'
                for name in ('interleaved', 'pairs', 'video')
                for key in (f'data_root={d}',
                            f'tokenizer.pretrained={p["lm"]}')
            ],
        }[stage]
        if self.args.quick:
            opts += ['train_cfg.max_iters=4']
        return opts

    def model_options(self) -> List[str]:
        p = self.paths
        return [
            f'model.tokenizer.pretrained={p["lm"]}',
            f'model.backbone.pretrained={p["vision"]}',
            f'model.head.lm.pretrained={p["lm"]}',
        ]

    def eval_options(self, task: str, selection: str) -> List[str]:
        rices = osp.join(self.paths['rices'], task)
        opts = self.model_options() + [
            f'test_cfg.demo_selection={selection}',
            f'test_cfg.rices_support_features={rices}_support.pth',
            f'test_cfg.rices_query_features={rices}_query.pth',
        ]
        if selection == 'rices':
            # RICES picks the same demos in every trial
            opts.append('test_cfg.num_trials=1')
        for key in ('test_cfg.support', 'test_dataloader.dataset',
                    'rices_dataset', 'rices_query_dataset'):
            opts.append(f'{key}.data_root={self.data}')
        if self.args.quick:
            opts += [
                'test_cfg.max_queries=4', 'test_cfg.shots=[0,2]',
                'test_cfg.num_trials=1'
            ]
        return opts

    def stage(self, name: str, done: Callable[[], bool],
              run: Callable[[], None]) -> None:
        """Run a stage unless it is finished (and not asked to redo)."""
        if name in self.redo or not done():
            print(f'\n=== stage: {name} ===', flush=True)
            start = time.perf_counter()
            run()
            self.timings[name] = time.perf_counter() - start
            print(f'=== {name}: {self.timings[name]:.0f} s ===', flush=True)
            # a redone stage makes the later ones stale
            if name in STAGES:
                self.redo.update(STAGES[STAGES.index(name) + 1:])
        else:
            print(f'=== stage: {name}: finished before, reused ===')

    # ------------------------------------------------------------- stages
    def world(self) -> None:
        from mmflamingo.shapes_world import write_shapes_world
        from mmflamingo.shapes_world.writer import VERSION
        scale = 'tiny' if self.args.quick else 'default'
        manifest = osp.join(self.data, 'world.json')

        def done() -> bool:
            if not osp.isfile(manifest):
                return False
            with open(manifest) as f:
                world = json.load(f)
            made = (world.get('seed'), world.get('scale'),
                    world.get('version'))
            return bool(world.get('complete')) and made == (self.args.seed,
                                                            scale, VERSION)

        self.stage(
            'world', done, lambda: write_shapes_world(
                self.data,
                seed=self.args.seed,
                scale=scale,
                force=True,
                progress=True))

    def tokenizer(self) -> None:
        from mmflamingo.models.utils.bpe import train_bpe_tokenizer
        out = self.paths['tokenizer']
        self.stage(
            'tokenizer', lambda: osp.isfile(osp.join(out, 'tokenizer.json')),
            lambda: train_bpe_tokenizer(
                [osp.join(self.data, 'text', 'corpus.txt')],
                out,
                min_frequency=MIN_MERGE_FREQUENCY,
                flamingo_tokens=True))

    def train(self, name: str, config: str, work_dir: str,
              output: str) -> None:
        """Train with ``config`` in ``work_dir``; finished once ``output``
        (the stage's exported or published file) exists."""
        train = load_tool('tools/train.py')
        self.stage(name, lambda: osp.isfile(output),
                   lambda: self._train(train, name, config, work_dir))

    def _train(self, train, name: str, config: str, work_dir: str) -> None:
        train.main([
            config, '--work-dir', work_dir, '--cfg-options',
            *self.options(name)
        ])
        # the finished Runner is cyclic garbage: collected now, not during
        # the evaluations, with the training's frame cache (1 GB) (its
        # loader processes MixtureTrainLoop has stopped already)
        gc.collect()
        if name == 'flamingo':
            with open(osp.join(work_dir, 'last_checkpoint')) as f:
                last = f.read().strip()
            publish = load_tool('tools/model_converters/publish_model.py')
            publish.publish_checkpoint(last, self.paths['checkpoint'])

    def pretrain(self) -> None:
        """Stage 1: the tokenizer, the vision encoder and the LM."""
        work = self.work
        self.tokenizer()
        self.train('vision', 'configs/shapes/clip-tiny_shapes_contrastive.py',
                   osp.join(work, 'vision'),
                   osp.join(self.paths['vision'], 'config.json'))
        for stage in LM_STAGES:
            self.train(stage, f'configs/shapes/llama-tiny_shapes_{stage}.py',
                       osp.join(work, stage),
                       osp.join(self.paths[stage], 'config.json'))
        if self.args.export_pretrained:
            export_pretrained(self.paths['vision'], self.paths['lm'])

    def probe_lm(self) -> dict:
        """Stage 2: is the LM an in-context learner? (printed, kept in
        ``WORK_DIR/lm_probes.json``)."""
        for part in ('vision', 'lm'):
            if not osp.isfile(osp.join(self.paths[part], 'config.json')):
                raise FileNotFoundError(
                    f'{self.paths[part]} holds no pretrained {part}: the '
                    'shipped weights are part of the repository (git '
                    'checkout checkpoints/shapes), or run with '
                    '--from-scratch')
        from mmflamingo.shapes_world.probes import probe_lm_dir
        start = time.perf_counter()
        probes = probe_lm_dir(
            self.paths['lm'], self.data, num=20 if self.args.quick else 200)
        self.timings['probes'] = time.perf_counter() - start
        print('\nLM probes (held-out text): ' + format_probes(probes))
        os.makedirs(self.work, exist_ok=True)
        with open(osp.join(self.work, 'lm_probes.json'), 'w') as f:
            json.dump(probes, f, indent=2)
        return probes

    def evaluate(self) -> Dict[str, dict]:
        test = load_tool('tools/test.py')
        rices_tool = load_tool('tools/cache_rices_features.py')
        results = {}
        for task, (config, _) in TASKS.items():
            for selection in SELECTIONS:
                work_dir = osp.join(self.paths['eval'], task, selection)
                out = osp.join(work_dir, 'fewshot_results.json')

                def run(task=task,
                        config=config,
                        selection=selection,
                        work_dir=work_dir):
                    if selection == 'rices':
                        self._cache_rices(rices_tool, task, config)
                    test.main([
                        config, self.paths['checkpoint'], '--work-dir',
                        work_dir, '--cfg-options',
                        *self.eval_options(task, selection)
                    ])

                self.stage(
                    f'eval {task} {selection}',
                    lambda out=out: 'eval' not in self.redo and osp.isfile(out
                                                                           ),
                    run)
                with open(out) as f:
                    results[f'{task}/{selection}'] = json.load(f)
        return results

    def _cache_rices(self, tool, task: str, config: str) -> None:
        """The RICES features of a task's support and query sets; images
        another task's sets already have (the scenes of captioning, VQA and
        binding) are taken from this run's earlier files, not encoded
        again."""
        os.makedirs(self.paths['rices'], exist_ok=True)
        for split in ('support', 'query'):
            out = osp.join(self.paths['rices'], f'{task}_{split}.pth')
            reuse = ['--reuse', *self.rices_files] if self.rices_files else []
            tool.main([
                config, '--split', split, '--out', out, '--checkpoint',
                self.paths['checkpoint'], *reuse, '--cfg-options',
                *self.eval_options(task, 'rices')
            ])
            self.rices_files.append(out)

    def run(self) -> Dict[str, dict]:
        start = time.perf_counter()
        self.world()
        if self.args.from_scratch:
            self.pretrain()
        self.probe_lm()
        self.train('flamingo',
                   'configs/shapes/flamingo-tiny_shapes_mixture.py',
                   self.paths['flamingo'], self.paths['checkpoint'])
        results = self.evaluate()
        summary = write_summary(results, self.work, baselines(self.data))
        print('\n' + summary)
        print(f'recipe: {time.perf_counter() - start:.0f} s in all; stages '
              'run now: ' + ', '.join(f'{k} {v:.0f} s'
                                      for k, v in self.timings.items()))
        return results


def export_pretrained(vision: str, lm: str) -> None:
    """Copy the vision tower (without CLIP's text tower) and the LM, in
    float16, to the shipped directories."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer,
                              CLIPVisionModel)
    for out in SHIPPED.values():
        shutil.rmtree(out, ignore_errors=True)
    CLIPVisionModel.from_pretrained(vision).to(torch.float16).save_pretrained(
        SHIPPED['vision'])
    AutoModelForCausalLM.from_pretrained(lm).to(torch.float16).save_pretrained(
        SHIPPED['lm'])
    AutoTokenizer.from_pretrained(lm).save_pretrained(SHIPPED['lm'])
    print(f'exported the vision encoder to {SHIPPED["vision"]} and the LM '
          f'to {SHIPPED["lm"]}')


def format_probes(probes: dict) -> str:
    """One line of the LM's probe results."""
    return (f"copy {probes['repeat_first']:.2f} -> "
            f"{probes['repeat_copy']:.2f} nats; text binding (Flamingo's "
            f"layout) {probes['binding_word_4shot']:.0f}% at 4 shots, "
            f"{probes['binding_word_8shot']:.0f}% at 8 (chance "
            f"{probes['binding_8shot_chance']:.0f}%, a name the demos showed "
            f"{probes['binding_8shot_seen_name']:.0f}%); reading "
            f"{probes['reading']:.0f}% (prior {probes['reading_prior']:.0f}%)")


def baselines(data_root: str) -> Dict[str, float]:
    """What no use of the image or the demos can beat, per task: binding's
    chance (1 / an episode's names) and, for VQA and video, the accuracy of
    the support set's most frequent answer to each question type."""
    from mmflamingo.evaluation.metrics.vqa import vqa_accuracy

    def load(path: str) -> dict:
        with open(osp.join(data_root, path)) as f:
            return json.load(f)

    out = {}
    queries = load('binding/val_questions.json')['questions']
    out['binding'] = 100 * sum(1 / len(q['multiple_choices'])
                               for q in queries) / len(queries)
    for task, folder in (('vqa', 'vqa'), ('video', 'videoqa')):
        support = load(f'{folder}/train_annotations.json')['annotations']
        counts: Dict[str, Dict[str, int]] = {}
        for ann in support:
            answers = counts.setdefault(ann['question_type'], {})
            answer = ann['multiple_choice_answer']
            answers[answer] = answers.get(answer, 0) + 1
        prior = {t: max(c, key=c.get) for t, c in counts.items()}
        val = load(f'{folder}/val_annotations.json')['annotations']
        out[task] = 100 * sum(
            vqa_accuracy(prior.get(a['question_type'], ''), a['answers'])
            for a in val) / len(val)
    return out


def write_summary(results: Dict[str, dict], work_dir: str,
                  baseline: Dict[str, float]) -> str:
    """``results.{json,md,png}`` in ``work_dir``; returns the markdown.

    ``results.json``: ``results["<task>/<demos>"]`` has the ``metric``,
    ``scores["<shots>"]`` (the mean over trials) and ``ci95["<shots>"]``
    (``[low, high]``, the 95% bootstrap interval over queries and trials);
    ``baselines`` has each task's chance or prior, ``binding_chance`` too.
    """
    shots = sorted(
        {r['shots']
         for s in results.values()
         for r in s['results']})
    lines = [
        'Shapes world, held-out queries: mean score over trials [95% '
        'interval over queries and trials] by shot count', '',
        '| task | metric | demos | queries | trials | ' +
        ' | '.join(f'{s} shots' for s in shots) + ' |',
        '|---|---|---|---:|---:|' + '---:|' * len(shots)
    ]
    table = {}
    for key, summary in results.items():
        task, selection = key.split('/')
        metric = TASKS[task][1]
        rows = {r['shots']: r for r in summary['results']}
        entry = dict(
            metric=metric,
            num_queries=summary['num_queries'],
            num_trials=len(summary['results'][0]['trials']),
            scores={
                s: r['mean'][metric]
                for s, r in rows.items()
            },
            ci95={
                s: r['ci95'][metric]
                for s, r in rows.items()
            })
        table[key] = entry

        def cell(s: int) -> str:
            if s not in entry['scores']:
                return '-'
            low, high = entry['ci95'][s]
            return f"{entry['scores'][s]:.1f} [{low:.1f}, {high:.1f}]"

        lines.append(f'| {task} | {metric} | {selection} | '
                     f"{entry['num_queries']} | {entry['num_trials']} | " +
                     ' | '.join(cell(s) for s in shots) + ' |')
    lines += [
        '', 'Baselines (no use of the image or the demos): ' +
        ', '.join(f'{task} {value:.1f}' for task, value in baseline.items())
    ]
    markdown = '\n'.join(lines) + '\n'
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(markdown)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(
            dict(
                results=table,
                baselines=baseline,
                binding_chance=baseline.get('binding')),
            f,
            indent=2)
    _plot(table, baseline, osp.join(work_dir, 'results.png'))
    return markdown


def _plot(table: dict, baseline: Dict[str, float], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mmflamingo.evaluation.bootstrap import interval_bars
    fig, axes = plt.subplots(
        1, len(TASKS), figsize=(4 * len(TASKS), 3.6), squeeze=False)
    for ax, task in zip(axes[0], TASKS):
        for offset, selection in zip((-0.15, 0.15), SELECTIONS):
            entry = table.get(f'{task}/{selection}')
            if entry is None:
                continue
            shots = sorted(entry['scores'])
            means = [entry['scores'][s] for s in shots]
            ax.errorbar([s + offset for s in shots],
                        means,
                        yerr=interval_bars(means,
                                           [entry['ci95'][s] for s in shots]),
                        marker='o',
                        capsize=3,
                        label=f'{selection} demos')
            ax.set_xticks(shots)
        if task in baseline:
            name = 'chance' if task == 'binding' else 'prior'
            ax.axhline(
                baseline[task], color='grey', linestyle='--', label=name)
        top = 100 if task != 'caption' else None
        ax.set_ylim(bottom=0, top=top)
        ax.set_title(f'{task} ({TASKS[task][1]})')
        ax.set_xlabel('shots')
        ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    os.chdir(ROOT)
    return Recipe(parse_args(argv)).run()


if __name__ == '__main__':
    main()
