"""Readers and writers for the formats rnaret touches; every reader raises ``InputError``
naming the file, the record, the line (and the column where it helps) and what is wrong.

- ``text``: the one way readers get at a file's lines (gzip by content, UTF-8, any line ending);
- ``fasta``: FASTA (plain or gzipped), streaming;
- ``structure``: dot-bracket, ``.dbn``, ``.bpseq``, ``.ct``, structure tables and folders;
- ``mirna_table``: miRNA-target pair tables (our TSV and the published 5-column ``.txt``);
- ``transcripts``: transcript FASTA labelled by ``CDS:a-b`` headers;
- ``dataset_readers``: which format a dataset path holds and its one reader (every stage uses it);
- ``mapping``: YAML/JSON files holding a mapping (settings, dataset configs, checkpoint JSON);
- ``atomic``: outputs written atomically; ``errors``: ``InputError``.
"""
from rnaret.io.errors import InputError

__all__ = ["InputError"]
