"""The whole Flamingo recipe in miniature, on the procedurally generated
shapes world: ``python tools/shapes_recipe.py`` (or, from a fresh clone,
``bash tools/run_shapes_recipe.sh``, which sets up the environment first).

Stages, each reusing its output when a previous run finished it:

0. the world (``tools/misc/make_shapes_world.py``) and a byte-level BPE
   tokenizer trained on its text (``tools/misc/train_bpe_tokenizer.py``);
1. a tiny CLIP trained contrastively from scratch
   (``configs/shapes/clip-tiny_shapes_contrastive.py``): Flamingo's frozen
   vision encoder;
2. a tiny LLaMA trained on the world's text
   (``configs/shapes/llama-tiny_shapes_lm.py``): Flamingo's frozen LM;
3. Flamingo on the mixture of interleaved documents, pairs and videos, loss
   weights 1.0 / 0.2 / 0.03
   (``configs/shapes/flamingo-tiny_shapes_mixture.py``),
   published to ``flamingo-tiny_shapes.pth``;
4. few-shot evaluation on held-out scenes at 0/4/8 shots, random and RICES
   demos: captioning (CIDEr), VQA (VQA accuracy) and the in-context binding
   task (accuracy; chance is 1 / the names of an episode).

Every stage is the real tool (``tools/train.py``, ``tools/test.py``,
``tools/cache_rices_features.py``) on a config, run in this process to pay
the import time once. The results table is printed and written with a
score-vs-shots plot to ``WORK_DIR/results.{md,json,png}``.

``--quick`` runs every stage for a few iterations on a tiny world (for
tests); its numbers mean nothing.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASKS = dict(
    caption=('configs/shapes/flamingo-tiny_shapes_fewshot-caption.py',
             'caption/CIDEr'),
    vqa=('configs/shapes/flamingo-tiny_shapes_fewshot-vqa.py', 'vqa/accuracy'),
    binding=('configs/shapes/flamingo-tiny_shapes_fewshot-binding.py',
             'classification/accuracy/top1'))
SELECTIONS = ('random', 'rices')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--data-root', default='data/shapes', help='where the world goes')
    parser.add_argument(
        '--work-dir', default='work_dirs/shapes', help='where stages write')
    parser.add_argument('--seed', type=int, default=0, help='world seed')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='a few iterations per stage on a tiny world (tests)')
    parser.add_argument(
        '--redo',
        nargs='+',
        default=[],
        choices=['world', 'tokenizer', 'vision', 'lm', 'flamingo', 'eval'],
        help='run these stages even if finished (later stages too)')
    return parser.parse_args(argv)


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
        self.paths = dict(
            tokenizer=osp.join(self.work, 'tokenizer'),
            vision=osp.join(self.work, 'vision', 'hf'),
            lm=osp.join(self.work, 'lm', 'hf'),
            flamingo=osp.join(self.work, 'flamingo'),
            checkpoint=osp.join(self.work, 'flamingo',
                                'flamingo-tiny_shapes.pth'),
            rices=osp.join(self.work, 'rices'),
            eval=osp.join(self.work, 'eval'))

    # ------------------------------------------------------------ helpers
    def options(self, stage: str) -> List[str]:
        """``--cfg-options`` pointing a stage at this run's paths."""
        p, d = self.paths, self.data
        opts = dict(
            vision=[
                f'model.tokenizer.pretrained={p["tokenizer"]}',
                f'train_dataloader.dataset.data_root={d}',
                f'custom_hooks.0.out_dir={p["vision"]}',
            ],
            lm=[
                f'model.tokenizer.pretrained={p["tokenizer"]}',
                f'train_dataloader.dataset.data_root={d}',
                f'train_dataloader.dataset.tokenizer.pretrained='
                f'{p["tokenizer"]}',
                f'custom_hooks.0.out_dir={p["lm"]}',
            ],
            flamingo=self.model_options() + [
                f'train_dataloader.datasets.{name}.dataset.{key}'
                for name in ('interleaved', 'pairs', 'video')
                for key in (f'data_root={d}',
                            f'tokenizer.pretrained={p["lm"]}')
            ],
        )[stage]
        if self.args.quick:
            iters = dict(vision=4, lm=4, flamingo=4)[stage]
            opts += [f'train_cfg.max_iters={iters}']
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
            f'fewshot_eval.demo_selection={selection}',
            f'fewshot_eval.rices_support_features={rices}_support.pth',
            f'fewshot_eval.rices_query_features={rices}_query.pth',
        ]
        for split in ('support', 'query'):
            opts.append(f'fewshot_eval.{split}.data_root={self.data}')
        for key in ('rices_dataset', 'rices_query_dataset'):
            opts.append(f'{key}.data_root={self.data}')
        if self.args.quick:
            opts += ['fewshot_eval.max_queries=4', 'fewshot_eval.shots=[0,2]']
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
            order = ['world', 'tokenizer', 'vision', 'lm', 'flamingo', 'eval']
            if name in order:
                self.redo.update(order[order.index(name) + 1:])
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
                [osp.join(self.data, 'text', 'corpus.txt')], out))

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
        if name == 'flamingo':
            with open(osp.join(work_dir, 'last_checkpoint')) as f:
                last = f.read().strip()
            publish = load_tool('tools/model_converters/publish_model.py')
            publish.publish_checkpoint(last, self.paths['checkpoint'])

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
        os.makedirs(self.paths['rices'], exist_ok=True)
        for split in ('support', 'query'):
            out = osp.join(self.paths['rices'], f'{task}_{split}.pth')
            tool.main([
                config, '--split', split, '--out', out, '--checkpoint',
                self.paths['checkpoint'], '--cfg-options',
                *self.eval_options(task, 'rices')
            ])

    def run(self) -> Dict[str, dict]:
        start = time.perf_counter()
        self.world()
        self.tokenizer()
        work = self.work
        self.train('vision', 'configs/shapes/clip-tiny_shapes_contrastive.py',
                   osp.join(work, 'vision'),
                   osp.join(self.paths['vision'], 'config.json'))
        self.train('lm', 'configs/shapes/llama-tiny_shapes_lm.py',
                   osp.join(work, 'lm'),
                   osp.join(self.paths['lm'], 'config.json'))
        self.train('flamingo',
                   'configs/shapes/flamingo-tiny_shapes_mixture.py',
                   self.paths['flamingo'], self.paths['checkpoint'])
        results = self.evaluate()
        summary = write_summary(results, self.work, self.chance())
        print('\n' + summary)
        print(f'recipe: {time.perf_counter() - start:.0f} s in all; stages '
              'run now: ' + ', '.join(f'{k} {v:.0f} s'
                                      for k, v in self.timings.items()))
        return results

    def chance(self) -> Optional[float]:
        """The binding task's chance accuracy, from the world's queries."""
        path = osp.join(self.data, 'binding', 'val_questions.json')
        if not osp.isfile(path):
            return None
        with open(path) as f:
            questions = json.load(f)['questions']
        return 100 * sum(1 / len(q['multiple_choices'])
                         for q in questions) / len(questions)


def write_summary(results: Dict[str, dict], work_dir: str,
                  chance: Optional[float]) -> str:
    """``results.{json,md,png}`` in ``work_dir``; returns the markdown."""
    shots = sorted(
        {r['shots']
         for s in results.values()
         for r in s['results']})
    lines = [
        'Shapes world, held-out queries: score by shot count', '',
        '| task | metric | demos | queries | ' + ' | '.join(f'{s} shots'
                                                            for s in shots) +
        ' |', '|---|---|---|---:|' + '---:|' * len(shots)
    ]
    table = {}
    for key, summary in results.items():
        task, selection = key.split('/')
        metric = TASKS[task][1]
        row = {r['shots']: r['mean'][metric] for r in summary['results']}
        table[key] = dict(metric=metric, scores=row)
        lines.append(f'| {task} | {metric} | {selection} | '
                     f"{summary['num_queries']} | " +
                     ' | '.join(f'{row[s]:.1f}' if s in row else '-'
                                for s in shots) + ' |')
    if chance is not None:
        lines += ['', f'Binding chance accuracy: {chance:.1f}']
    markdown = '\n'.join(lines) + '\n'
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(markdown)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(dict(results=table, binding_chance=chance), f, indent=2)
    _plot(table, chance, osp.join(work_dir, 'results.png'))
    return markdown


def _plot(table: dict, chance: Optional[float], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 3.5))
    for ax, task in zip(axes, TASKS):
        for selection in SELECTIONS:
            entry = table.get(f'{task}/{selection}')
            if entry is None:
                continue
            shots = sorted(entry['scores'])
            ax.plot(
                shots, [entry['scores'][s] for s in shots],
                marker='o',
                label=selection)
        if task == 'binding' and chance is not None:
            ax.axhline(chance, color='grey', linestyle='--', label='chance')
        ax.set_title(f'{task} ({TASKS[task][1]})')
        ax.set_xlabel('shots')
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    os.chdir(ROOT)
    return Recipe(parse_args(argv)).run()


if __name__ == '__main__':
    main()
