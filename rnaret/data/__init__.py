"""Data stages of the pretraining corpus (streaming: memory does not grow with the corpus).

Modules: ``download`` (HTTP(S)/local fetch with resume and md5), ``corpus`` (validation and U→T
normalisation before seqkit dedupe), ``sequence_key`` (the leakage comparison key),
``leakage`` (drop corpus records identical or similar to downstream valid/test sequences),
``similarity`` (the MMseqs2 search behind it), ``homology`` (the same check within each
dataset, reported), ``leakage_report`` (its figure and tables), ``lengths`` (the
length policy), ``shards`` (tokenize + shard writer and the ``ShardCorpus`` reader; the on-disk
format is in ``SHARDS.md``), ``batching`` (``TokenBudgetBatchSampler``, ``collate``).
"""
