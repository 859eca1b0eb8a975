"""Question generation: reading replies, the schema, and a real vLLM constrained by it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollouts.jsonl import read_jsonl
from rollouts.policy import ChatPolicy
from rollouts.questions import (
    MAX_TOOLS_PER_QUESTION,
    QUESTION_MAX_CHARS,
    batch_schema,
    parse_batch,
    run_questions,
    tool_names_of,
)
from rollouts.rollout import RetryConfig
from tests.fixtures.vllm_server import tiny_policy_config

GOOD = {"question": "What was the Henry Hub price on 2024-01-05?", "difficulty": "easy", "tools": ["get_price"]}


def test_parse_batch_reads_json_in_prose_fences_and_bare_lists() -> None:
    body = json.dumps({"questions": [GOOD]})
    for text in (
        body,
        f"Sure, here you go:\n```json\n{body}\n```\nAnything else?",
        f"<think>\nlet me see {{not json}}\n</think>\n{body}",
        json.dumps([GOOD]),
    ):
        batch = parse_batch(text)
        assert batch.usable and [q.question for q in batch.questions] == [GOOD["question"]], text
    assert not parse_batch("1. What is the price? 2. How much gas is stored?").usable
    assert not parse_batch('{"answer": 42}').usable


def test_parse_batch_keeps_good_items_and_the_complete_ones_of_a_cut_reply() -> None:
    bad = {"question": "Which hub?", "difficulty": "trivial", "tools": []}
    batch = parse_batch(json.dumps({"questions": [GOOD, bad, {**GOOD, "question": "Storage in week 3?"}]}))
    assert batch.usable and batch.invalid == 1 and len(batch.questions) == 2
    second = "Flows on the Transco pipeline?"
    cut = json.dumps({"questions": [GOOD, {**GOOD, "question": second}, GOOD]})
    cut = cut[: cut.rindex('"question"') + 20]  # max_tokens hit inside the third question
    batch = parse_batch(cut)
    assert batch.usable and [q.question for q in batch.questions] == [GOOD["question"], second]


def test_schema_names_only_the_env_tools() -> None:
    schema = batch_schema(3, ["get_price", "convert_units"])
    item = schema["properties"]["questions"]["items"]
    assert item["properties"]["tools"] == {
        "type": "array",
        "items": {"type": "string", "enum": ["get_price", "convert_units"]},
        "minItems": 1,
        "maxItems": MAX_TOOLS_PER_QUESTION,
    }
    assert item["properties"]["question"]["maxLength"] == QUESTION_MAX_CHARS
    assert schema["properties"]["questions"]["maxItems"] == 3
    assert "enum" not in batch_schema(3)["properties"]["questions"]["items"]["properties"]["tools"]["items"]


def _tools() -> list[dict[str, Any]]:
    """Three energy-like tools (the whole energy env's prompt is longer than the tiny model's
    2048-token context)."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {"type": "object", "properties": props, "required": list(props)},
            },
        }
        for name, description, props in (
            ("get_price", "Daily spot price at a gas hub.", {"hub": {"type": "string"}, "date": {"type": "string"}}),
            ("get_storage", "Weekly working gas in storage.", {"region": {"type": "string"}}),
            (
                "convert_units",
                "Convert an energy volume.",
                {"value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
            ),
        )
    ]


@pytest.mark.parametrize("structured", ["on", "off"])
async def test_real_vllm_with_the_schema_names_only_real_tools(vllm_tiny, tmp_path: Path, structured: str) -> None:
    """The tiny random-init model on the session's real vLLM: unconstrained it writes noise (no
    reply holds questions JSON); constrained by the schema every reply is a batch whose questions
    name only the env's tools, so each one is kept."""
    tools = _tools()
    names = tool_names_of(tools)
    out = tmp_path / "q.jsonl"
    config = tiny_policy_config(
        vllm_tiny,
        temperature=1.0,  # no seed: one seed on both (identical) requests would make them one completion
        max_tokens=700 if structured == "on" else 48,
        request_timeout_s=300,
    )
    async with ChatPolicy(config) as policy:
        run = await run_questions(
            "energy",
            tools,
            policy,
            4,
            out=out,
            batch_size=2,
            concurrency=2,
            max_requests=2,
            structured=structured,  # type: ignore[arg-type]
            retry=RetryConfig(retries=0),
            progress=False,
        )
    assert run.counts["requests"] == 2 and run.counts["answered"] == 2 and run.counts["failed"] == 0, run.counts
    if structured == "off":
        assert run.records == [] and run.counts["bad_batches"] == 2, run.summary()
        return
    assert run.structured and not run.fell_back
    assert run.counts["bad_batches"] == run.counts["invalid"] == run.counts["unknown_tools"] == 0, run.summary()
    records = read_jsonl(out)
    assert 1 <= len(records) == len(run.records) <= 4, (run.summary(), records)
    assert len(records) + run.counts["duplicates"] >= 2, run.summary()  # each reply held a question, all kept
    for record in records:
        assert record["tools"] and set(record["tools"]) <= set(names), record
        assert 1 <= len(record["tools"]) <= MAX_TOOLS_PER_QUESTION
        assert record["difficulty"] in ("easy", "medium", "hard")
        assert 0 < len(record["question"]) <= QUESTION_MAX_CHARS
