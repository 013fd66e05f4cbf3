"""Write the toy training mixture the tiny configs read.

Usage: python tools/misc/make_toy_data.py [OUT_DIR] (default data/toy).
"""
import argparse

from mmflamingo.testing.toy_data import write_toy_mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir', nargs='?', default='data/toy')
    parser.add_argument('--num-samples', type=int, default=8)
    args = parser.parse_args()
    paths = write_toy_mixture(args.out_dir, num_samples=args.num_samples)
    print(f'toy mixture in {paths["root"]}')


if __name__ == '__main__':
    main()
