"""The ``tfkd`` command's argument parsing pieces that several commands share."""

import argparse

from tfkd.cli.errors import EXIT_SPEC_ERROR

STAGES_HELP = """stages (tfkd config SPEC prints a spec's own plan):
  vocab               learn the vocabularies (or take the teacher's)
  <method stages>     what the method adds before the student: a teacher's fine-tuning, its
                      cached outputs, pre-training (tfkd list shows the methods)
  baseline            the same student trained on the references alone, for comparison
  <variant>           each of the spec's variants: the student with a few settings changed
  train               the student, trained by the spec's method
  *_evaluate, evaluate  score a student on evaluate.splits
  <stage>-s<SEED>     a student's stage for one more seed (--seeds); with the first seed,
                      that student's own stage alone, without the other seeds' copies
  export              a TF Serving SavedModel that takes raw text
A finished stage whose inputs are unchanged is skipped; a killed one resumes from its checkpoint."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported in one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_SPEC_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def seed_list(text):
    """``--seeds 1,2,3``: different integers from 0 to 2**32 - 1 (NumPy's seeds), comma-separated."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) < 2**32 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers from 0 to {2**32 - 1} such as 1,2,3, got {text!r}"
        )
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected different seeds, got {text!r}")
    return seeds


def export_version(text):
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return text if text == "auto" else int(text)
