"""Dataset sheets (the `dataset_sheet:` table) for the settings tests: the default datasets as rows."""


def write_sheet(path, rows, header="task\tdataset\tsplit\tpath\tselect\tfinetuned_on"):
    path.write_text("\n".join([header] + ["\t".join(r) for r in rows]) + "\n")
    return path


DEFAULT_SHEET = [
    ("structure", "bprna", "train", "resources/structure/bprna_train.csv", "", ""),
    ("structure", "bprna", "valid", "resources/structure/bprna_valid.csv", "", ""),
    ("structure", "bprna", "test", "resources/structure/bprna_test.csv", "", ""),
    *[("interaction", "mirtar", s, "resources/mirna_target/mirtar_deepmirtar_miraw.tsv", s, "")
      for s in ("train", "valid", "test")],
    ("interaction", "mirtar_indtest", "test", "resources/mirna_target/mirtar_deepmirtar_indtest.tsv", "", "mirtar"),
    ("coding", "mouse", "train", "resources/mrna_lncrna/mouse_train.fa.gz", "", ""),
    ("coding", "mouse", "test", "resources/mrna_lncrna/mouse_test.fa.gz", "", ""),
    *[("sequence-classification", "mncr", s, "resources/ncrna/mncr_families.tsv", s, "")
      for s in ("train", "valid", "test")],
]
