import os.path as osp
from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))


def readme():
    """Return the README, used as the long description."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    """Read ``__version__`` from ``mmflamingo/version.py`` without importing
    the package (its dependencies may not be installed yet)."""
    version_file = osp.join(ROOT, 'mmflamingo', 'version.py')
    namespace = {}
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(fname):
    """Parse a pip requirements file into PEP 508 requirement strings.

    Comments and blank lines are skipped and ``-r other.txt`` lines are
    followed (relative to the including file), so the files under
    ``requirements/`` stay the single source of truth.

    Args:
        fname (str): Path of the requirements file, relative to the repo root.

    Returns:
        list[str]: The requirement strings, with their version specifiers.
    """
    fpath = osp.join(ROOT, fname)
    requirements = []
    with open(fpath, encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                target = osp.join(osp.dirname(fname), line[3:].strip())
                requirements.extend(parse_requirements(target))
            elif line.startswith('-'):
                raise ValueError(f'{fpath}: unsupported pip option {line!r}')
            else:
                requirements.append(line)
    return requirements


# requirements/reference.txt (OpenFlamingo) is deliberately not an extra: its
# metadata pins torch==2.0.1, so it is installed with --no-deps by
# tools/setup_env.sh.
install_requires = (
    parse_requirements('requirements/runtime.txt') +
    parse_requirements('requirements/mminstall.txt'))
extras_require = {
    'tests': parse_requirements('requirements/tests.txt'),
    'optional': parse_requirements('requirements/optional.txt'),
}
extras_require['all'] = extras_require['tests'] + extras_require['optional']

if __name__ == '__main__':
    setup(
        name='mmflamingo',
        version=get_version(),
        description='OpenMMLab-style toolbox for the Flamingo '
        'vision-language model',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, vision-language, flamingo, few-shot',
        packages=find_packages(
            exclude=('configs', 'configs.*', 'tools', 'tools.*', 'demo',
                     'demo.*', 'tests', 'tests.*')),
        # mmflamingo.datasets.IMAGENET_CLASS_NAMES_FILE
        package_data={'mmflamingo': ['datasets/imagenet_classnames.txt']},
        classifiers=[
            'Development Status :: 3 - Alpha',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.10',
            'Programming Language :: Python :: 3.11',
            'Programming Language :: Python :: 3.12',
        ],
        python_requires='>=3.10',
        install_requires=install_requires,
        extras_require=extras_require,
        zip_safe=False)
