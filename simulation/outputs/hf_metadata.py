"""What a Hugging Face model's own files say about it, read without loading it.

The reference PoC (ericyoc/huggingface-model-metadata-blockchain-poc) downloads
each model and asks ``AutoConfig``/``AutoTokenizer`` for its architecture,
vocabulary size and special tokens; it takes the task from the Hub's
``pipeline_tag`` and a category from the repo's tags. We read the same facts
from the small JSON files those classes read (``config.json``,
``special_tokens_map.json``, ``tokenizer_config.json``), so an import needs
neither transformers nor the weights' download; ``tests/fixtures/hf/
make_reference.py`` checks the readings against transformers itself.

* **Vocabulary size**: ``config.json``'s ``vocab_size`` (the model's embedding
  rows). The PoC printed ``tokenizer.vocab_size``, which is the same number for
  BERT- and GPT-2-family repos; where an embedding table is padded beyond the
  tokenizer, ours is the larger, the model's.
* **Special tokens**: ``special_tokens_map.json`` (what the tokenizer's
  ``special_tokens_map`` holds), else the ``*_token`` entries of
  ``tokenizer_config.json``, else the Hub API's ``config.tokenizer_config``;
  ``AddedToken`` objects are reduced to their ``content``.
* **Task**: the Hub's ``pipeline_tag`` (API or model card); else inferred from
  the architecture's head, named the way transformers' Auto classes name them
  (``BertForMaskedLM`` -> ``fill-mask``); else, for a bare architecture with
  real class names in ``id2label``, a classification task of the modality the
  repo's files show (a tokenizer: text; an image processor: image).
  ``task_source`` says which rule answered.
* **Category**: the Hub's own modality of the task (huggingface.js
  ``packages/tasks/src/pipelines.ts``), with its display labels. The PoC
  matched tags against a short hand list, so it filed feature-extraction and
  text2text-generation models under "other"; the Hub files them under natural
  language processing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SPECIAL_TOKEN_KEYS",
    "TASK_MODALITIES",
    "category_of",
    "infer_task",
    "labels_of",
    "library_of",
    "safetensors_parameters",
    "special_tokens",
    "tensor_shapes",
]

SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
)
"""The attributes of transformers' ``SpecialTokensMixin`` (its ``special_tokens_map``)."""

MODALITY_LABELS = {
    "multimodal": "Multimodal",
    "nlp": "Natural Language Processing",
    "audio": "Audio",
    "cv": "Computer Vision",
    "rl": "Reinforcement Learning",
    "tabular": "Tabular",
    "other": "Other",
}

_TASKS_BY_MODALITY = {
    "nlp": (
        "text-classification token-classification table-question-answering question-answering "
        "zero-shot-classification translation summarization feature-extraction text-generation "
        "text2text-generation fill-mask sentence-similarity table-to-text multiple-choice "
        "text-ranking text-retrieval"
    ),
    "audio": (
        "text-to-speech text-to-audio automatic-speech-recognition audio-to-audio "
        "audio-classification voice-activity-detection"
    ),
    "cv": (
        "depth-estimation image-classification object-detection image-segmentation "
        "text-to-image image-to-text image-to-image image-to-video unconditional-image-generation "
        "video-classification zero-shot-image-classification mask-generation "
        "zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction "
        "keypoint-detection text-to-video"
    ),
    "multimodal": (
        "biology audio-text-to-text image-text-to-text visual-question-answering "
        "document-question-answering video-text-to-text visual-document-retrieval any-to-any"
    ),
    "rl": "reinforcement-learning robotics",
    "tabular": (
        "tabular-classification tabular-regression tabular-to-text time-series-forecasting"
    ),
    "other": "graph-ml other",
}
TASK_MODALITIES: dict[str, str] = {
    task: modality for modality, tasks in _TASKS_BY_MODALITY.items() for task in tasks.split()
}
"""Hub pipeline tag -> its modality, as the Hub's task taxonomy assigns them."""

_HEADS = (
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForImageClassification", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForAudioClassification", "audio-classification"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForSpeechSeq2Seq", "automatic-speech-recognition"),
)
"""Architecture-name suffix -> task, the heads of transformers' Auto classes
(``AutoModelForMaskedLM`` serves fill-mask, ...). Ambiguous heads
(``ForConditionalGeneration``: translation, summarization or image-to-text) are
left unanswered rather than guessed."""

_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


def category_of(task: str | None) -> str | None:
    """The Hub's modality label of ``task`` (``None`` without a task)."""
    if task is None:
        return None
    return MODALITY_LABELS[TASK_MODALITIES.get(task, "other")]


def labels_of(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Class names from ``id2label`` (transformers) or ``label_names`` (timm), in
    class order; ``()`` when only transformers' default ``LABEL_i`` names are set."""
    raw = config.get("id2label")
    if isinstance(raw, Mapping) and raw:
        names = [str(raw[k]) for k in sorted(raw, key=lambda k: int(k))]
        return () if all(_DEFAULT_LABEL.fullmatch(n) for n in names) else tuple(names)
    listed = config.get("label_names")
    if isinstance(listed, list):
        return tuple(str(n) for n in listed)
    return ()


def infer_task(
    pipeline_tag: str | None,
    architecture: str | None,
    labels: tuple[str, ...],
    files: Iterable[str],
) -> tuple[str | None, str | None]:
    """``(task, task_source)``: see the module docstring for the order of rules."""
    if pipeline_tag:
        return pipeline_tag, "pipeline_tag"
    if architecture:
        for suffix, task in _HEADS:
            if architecture.endswith(suffix):
                return task, "architecture"
    if labels:
        names = set(files)
        if names & {"tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json"}:
            return "text-classification", "id2label"
        if names & {"preprocessor_config.json", "image_processor_config.json"}:
            return "image-classification", "id2label"
    return None, None


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])  # a serialised AddedToken
    return None


def special_tokens(*sources: Mapping[str, Any] | None) -> dict[str, str | list[str]]:
    """The special tokens of the first source that names any (see the module docstring)."""
    for source in sources:
        if not source:
            continue
        out: dict[str, str | list[str]] = {}
        for key in SPECIAL_TOKEN_KEYS:
            value = source.get(key)
            if key == "additional_special_tokens" and isinstance(value, list):
                tokens = [t for t in (_token_text(v) for v in value) if t is not None]
                if tokens:
                    out[key] = tokens
            elif (text := _token_text(value)) is not None:
                out[key] = text
        if out:
            return dict(sorted(out.items()))
    return {}


def library_of(
    card: Mapping[str, Any], config: Mapping[str, Any], files: Iterable[str]
) -> str | None:
    """The card's ``library_name``; else what the files show: sentence-transformers'
    ``modules.json``, timm's ``pretrained_cfg``, transformers' ``architectures``."""
    if card.get("library_name"):
        return str(card["library_name"])
    names = set(files)
    if "modules.json" in names or "config_sentence_transformers.json" in names:
        return "sentence-transformers"
    if "pretrained_cfg" in config and "architecture" in config:
        return "timm"
    if "architectures" in config or "transformers_version" in config:
        return "transformers"
    return None


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Each tensor's shape in a safetensors file (its header only: no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        return {k: list(fh.get_slice(k).get_shape()) for k in sorted(fh.keys())}


def safetensors_parameters(path: Path) -> int:
    """Number of scalars in a safetensors file."""
    return sum(math.prod(shape) for shape in tensor_shapes(path).values())
