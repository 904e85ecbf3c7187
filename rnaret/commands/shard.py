"""`rnaret shard`: tokenize a FASTA corpus at k and write length-sorted token shards."""
from __future__ import annotations

import json
from pathlib import Path

HELP = "tokenize a FASTA corpus and write token shards (train/valid, length-sorted, indexed)"


def add_arguments(parser) -> None:
    from rnaret.settings.stages.data import shard_dir

    parser.add_argument("input", help="FASTA (plain or gzip), already filtered")
    parser.add_argument("-o", "--output", required=True, help=f"shard folder (the pipeline's: {shard_dir(3)} at k=3)")
    parser.add_argument("-k", "--k", type=int, required=True, choices=(1, 3, 5), help="k-mer size of the tokens")
    parser.add_argument("--tokens-per-shard", type=int, default=50_000_000,
                        help="tokens per shard file (default 50,000,000)")
    parser.add_argument("--valid-fraction", type=float, default=0.01,
                        help="fraction of the sequences held out for validation (default 0.01)")
    parser.add_argument("--valid-from-train", action="store_true",
                        help="hold nothing out: the records drawn for validation stay in train as well")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/valid split (default 0)")
    parser.add_argument("--run-tokens", type=int, default=8_000_000,
                        help="tokens held in memory per sorted run (bounds memory)")
    parser.add_argument("--provenance", nargs="*", default=[],
                        help="JSON files (e.g. the download record) copied into the manifest")
    parser.add_argument("--policy", help="JSON file with the length-policy counts, copied into the manifest")


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.data.shards import write_shards

    provenance = {Path(p).stem: json.loads(Path(p).read_text(encoding="utf-8")) for p in args.provenance}
    policy = json.loads(Path(args.policy).read_text(encoding="utf-8")) if args.policy else {}
    manifest = write_shards(args.input, args.output, args.k, tokens_per_shard=args.tokens_per_shard,
                            valid_fraction=args.valid_fraction, seed=args.seed,
                            run_tokens=args.run_tokens, provenance=provenance, policy=policy,
                            valid_from_train=args.valid_from_train)
    for split, info in manifest["splits"].items():
        print(f"shard k={args.k} {split}: {info['records']} records, {info['tokens']} tokens in "
              f"{len(info['files'])} shards, {info['unk_tokens']} UNK tokens, "
              f"{info['non_acgtu_letters']} non-ACGTU letters", flush=True)
    return 0
