"""Train a byte-level BPE tokenizer on text files (one document a line).

Usage: python tools/misc/train_bpe_tokenizer.py CORPUS [CORPUS ...]
    --out-dir DIR [--vocab-size N] [--min-frequency N] [--flamingo-tokens]

The directory it writes loads with ``AutoTokenizer.from_pretrained(DIR)``
(e.g. ``tokenizer=dict(pretrained=DIR)`` in a config).
"""
import argparse

from mmflamingo.models.utils.bpe import train_bpe_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('corpus', nargs='+', help='text files to train on')
    parser.add_argument(
        '--out-dir', required=True, help='where to save the tokenizer')
    parser.add_argument('--vocab-size', type=int, default=1024)
    parser.add_argument('--min-frequency', type=int, default=2)
    parser.add_argument(
        '--flamingo-tokens',
        action='store_true',
        help='end the vocabulary with <|endofchunk|> and <image>')
    args = parser.parse_args()
    tokenizer = train_bpe_tokenizer(
        args.corpus,
        args.out_dir,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        flamingo_tokens=args.flamingo_tokens)
    print(f'BPE tokenizer of {len(tokenizer)} tokens in {args.out_dir}')


if __name__ == '__main__':
    main()
