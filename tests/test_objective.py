"""One objective for every head (train/objective.py): the per-example loss matches the model's own loss on a batch
of one, and a weight of 0 removes an example exactly, for classification, tokens, QA spans, causal and seq2seq LMs."""

from __future__ import annotations

import pytest
import torch

from tailorlm.train.objective import WEIGHT_COLUMN, Objective, per_example_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bert(cls: type, **config: int) -> torch.nn.Module:
    from transformers import BertConfig

    torch.manual_seed(0)
    return cls(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=32, **config)).eval()


def _models_and_batches() -> dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor]]]:
    from transformers import (
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertForTokenClassification,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 50, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    tokens = torch.randint(0, 4, (3, 7), generator=g)
    tokens[:, 0] = tokens[1, 4:] = -100  # special tokens and padding carry no label
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    lm_labels = ids.clone()
    lm_labels[:, :3] = -100  # the prompt is masked out
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8,
                                             decoder_start_token_id=0, dropout_rate=0.0)).eval()
    return {
        "SEQ_CLS": (_bert(BertForSequenceClassification, num_labels=3),
                    {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1])}),
        "TOKEN_CLS": (_bert(BertForTokenClassification, num_labels=4),
                      {"input_ids": ids, "attention_mask": mask, "labels": tokens}),
        "QUESTION_ANS": (_bert(BertForQuestionAnswering),
                         {"input_ids": ids, "attention_mask": mask, "start_positions": torch.tensor([1, 2, 0]),
                          "end_positions": torch.tensor([3, 2, 0])}),
        "CAUSAL_LM": (llama, {"input_ids": ids, "attention_mask": mask, "labels": lm_labels}),
        "SEQ_2_SEQ_LM": (t5, {"input_ids": ids, "attention_mask": mask, "labels": tokens.clamp_min(0) + 3}),
    }


CASES = _models_and_batches()


def _row(batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {k: v[i: i + 1] for k, v in batch.items()}


@pytest.mark.parametrize("head", sorted(CASES))
def test_per_example_loss_is_the_models_own_loss_on_one_example(head: str) -> None:
    model, batch = CASES[head]
    objective = Objective.for_head(head)
    with torch.no_grad():
        for i in range(3):
            row = _row(batch, i)
            own = model(**row).loss
            targets = {k: row[k] for k in ("labels", "start_positions", "end_positions") if k in row}
            inputs = {k: v for k, v in row.items() if k not in targets}
            if head == "SEQ_2_SEQ_LM":
                inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=row["labels"])
            mine = per_example_loss(model(**inputs), targets, objective.kind)
            assert float(mine[0]) == pytest.approx(float(own), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("head", sorted(CASES))
def test_a_zero_weight_removes_the_example(head: str) -> None:
    model, batch = CASES[head]
    objective = Objective.for_head(head)
    with torch.no_grad():
        weighted, _ = objective(model, batch | {WEIGHT_COLUMN: torch.tensor([2.0, 0.0, 2.0])})
        kept = {k: v[[0, 2]] for k, v in batch.items()}
        alone, _ = objective(model, kept | {WEIGHT_COLUMN: torch.ones(2)})
        everything, _ = objective(model, batch | {WEIGHT_COLUMN: torch.ones(3)})
    assert float(weighted) == pytest.approx(float(alone), rel=1e-5)
    assert abs(float(weighted) - float(everything)) > 1e-5


def test_extra_terms_are_added_and_take_over_the_loss() -> None:
    model, batch = CASES["SEQ_CLS"]
    objective = Objective.for_head("SEQ_CLS")
    assert not objective.takes_over(batch)
    objective.extra_terms.append(lambda model, inputs, outputs: torch.tensor(0.5))
    assert objective.takes_over(batch)
    with torch.no_grad():
        total, _ = objective(model, batch)
        plain = model(**batch).loss
    assert float(total) == pytest.approx(float(plain) + 0.5, rel=1e-5)
