"""``RnaretTokenizer``: the published k-mer tokenization (``rnaret.tokenizer``) as a
``transformers`` tokenizer.

A sequence of n nt gives n ids exactly as ``rnaret.tokenize`` (U read as T, lower case
accepted, k//2 FILL ids at each end, UNK for a k-mer holding a letter outside ACGTU); a single
sequence gets no special tokens, as in pretraining and the per-nucleotide tasks, so
``add_special_tokens`` changes nothing for it; with ``cls_first`` (the tokenizer of a
sequence-level model, whose task read ``CLS`` + the k-mer tokens) it gets ``CLS`` in front. A
pair gives ``CLS a SEP b`` (SEP is the CLS id, the interaction task's layout).
``<mask>`` in the text stands for one unknown nucleotide: at k = 1 its token is MASK; at k > 1
the k tokens whose k-mers hold that nucleotide become MASK (the span pretraining masks), the
middle one being the k-mer centred on it (a masked nucleotide within k//2 of an end is covered
only by the masks that exist there).

Exported model folders carry this file (``rnaret export-hf``); it imports only
``transformers`` and, through a relative import in the folder, the k-mer module.
"""
from __future__ import annotations

import json
import os

from transformers import PreTrainedTokenizer

from rnaret.tokenizer import CLS, FILL, FIRST_KMER_ID, MASK, PAD, UNK, decode, encode, kmer_vocabulary

SPECIAL_TOKENS = ("<pad>", "<fill>", "<unk>", "<cls>", "<mask>", "<unused>")  # ids 0 .. 5
VOCAB_FILE = "vocab.json"


def vocabulary(k: int) -> dict[str, int]:
    """Token string -> id at k: the six special tokens, then the k-mers (T alphabet)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({kmer: FIRST_KMER_ID + i for i, kmer in enumerate(kmer_vocabulary(k))})
    return vocab


class RnaretTokenizer(PreTrainedTokenizer):
    """k-mer tokenizer with the published ids (see the module docstring); ``k`` is 1, 3 or 5;
    ``cls_first``: one sequence gets CLS in front (when special tokens are added)."""

    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, k: int = 1, vocab_file: str | None = None, cls_first: bool = False, **kwargs):
        self.k = int(k)
        self.cls_first = bool(cls_first)
        self._vocab = vocabulary(self.k)
        self._ids = {i: token for token, i in self._vocab.items()}
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as fh:
                stored = json.load(fh)
            if stored != self._vocab:
                raise ValueError(f"{vocab_file}: the vocabulary is not the published k-mer vocabulary at k={self.k}")
        for name, token in (("pad_token", "<pad>"), ("unk_token", "<unk>"), ("cls_token", "<cls>"),
                            ("sep_token", "<cls>"), ("mask_token", "<mask>")):
            kwargs.setdefault(name, token)
        super().__init__(k=self.k, cls_first=self.cls_first, **kwargs)  # kept in tokenizer_config.json

    @property
    def vocab_size(self) -> int:
        """4**k + 6."""
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id (the added tokens, if any, included)."""
        return {**self._vocab, **self.added_tokens_encoder}

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """Token strings of one nucleotide sequence (``<mask>`` marks unknown nucleotides)."""
        pieces = text.split(self.mask_token)
        masked, plain = [], []
        for piece in pieces[:-1]:
            plain.append(piece)
            masked.append(sum(map(len, plain)) + len(masked))
        plain.append(pieces[-1])
        sequence = "N".join(plain)
        ids = encode(sequence, self.k)
        flank = self.k // 2
        for i in masked:
            for j in range(max(0, i - flank), min(len(ids), i + flank + 1)):
                if ids[j] != FILL:
                    ids[j] = MASK
        return [self._ids[int(i)] for i in ids]

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.tokenize(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self._vocab.get(token, UNK)

    def _convert_id_to_token(self, index: int) -> str:
        return self._ids.get(int(index), SPECIAL_TOKENS[UNK])

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Nucleotides spelled by k-mer tokens (``rnaret.tokenizer.decode``: FILL and PAD give
        nothing, UNK gives N); a MASK or CLS token is written as its token string."""
        out, run = [], []
        for token in tokens:
            index = self._vocab.get(token, UNK)
            if index in (MASK, CLS):
                out.append(decode(run, self.k) + token)
                run = []
            elif index != PAD:
                run.append(index)
        return "".join(out) + decode(run, self.k)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None
                                         ) -> list[int]:
        """One sequence: its ids unchanged (CLS in front with ``cls_first``); a pair: CLS a SEP b."""
        if token_ids_1 is None:
            return [CLS, *token_ids_0] if self.cls_first else list(token_ids_0)
        return [CLS, *token_ids_0, CLS, *token_ids_1]

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 at the CLS/SEP ids ``build_inputs_with_special_tokens`` adds, 0 elsewhere."""
        if already_has_special_tokens:
            return [int(i == CLS) for i in token_ids_0]
        if token_ids_1 is None:
            return [1] * self.cls_first + [0] * len(token_ids_0)
        return [1, *([0] * len(token_ids_0)), 1, *([0] * len(token_ids_1))]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None
                                             ) -> list[int]:
        """All zero: the model has no segment embedding."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write the vocabulary (token -> id) as JSON; returns its path."""
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self._vocab, fh, indent=0)
        return (path,)
