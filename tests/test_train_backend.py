"""The torch backend speaks ART's Backend protocol against a real vLLM serving a tiny model.

One vLLM for the session (`vllm_tiny`); the backend shares it, so each test registers its own
model name and the backend unloads that model's adapters on close.
"""

from __future__ import annotations

import math
from pathlib import Path

import art
import pytest
from art.types import TrainSFTConfig
from openai.types.chat.chat_completion import Choice

from train.backends import make_backend, make_model
from train.backends.errors import BaseModelError
from train.backends.torch_backend import TorchBackend

pytestmark = pytest.mark.slow

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Electricity spot price for a zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    }
]


def sft_trajectory(zone: str, price: str) -> art.Trajectory:
    """A tool-calling conversation: call, tool result, answer."""
    return art.Trajectory(
        messages_and_choices=[
            {"role": "system", "content": "You answer energy questions with tools."},
            {"role": "user", "content": f"What is the price in {zone}?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_price", "arguments": f'{{"zone": "{zone}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": f'{{"price": {price}}}'},
            {"role": "assistant", "content": f"The price in {zone} is {price} EUR/MWh."},
        ],
        tools=TOOLS,
        reward=1.0,
    )


async def completion_choices(model: art.TrainableModel, n: int) -> list[Choice]:
    """Real sampled choices (token ids + logprobs) from the served policy."""
    client = model.openai_client()
    response = await client.chat.completions.create(
        model=model.get_inference_name(),
        messages=[{"role": "user", "content": "Say something about energy."}],
        max_tokens=8,
        n=n,
        temperature=1.0,
        logprobs=True,
        seed=1,
    )
    return list(response.choices)


async def test_protocol_round_trip(vllm_tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = make_backend("torch", path=tmp_path / ".art", server=vllm_tiny)
    assert isinstance(backend, TorchBackend)
    model = make_model("agent-rt", "proj", str(tiny_model_dir))
    try:
        await model.register(backend)
        # Served endpoint: the base model under the server's name until the first step.
        assert model.inference_base_url == vllm_tiny.base_url
        assert await model.get_step() == 0
        assert model.get_inference_name() == vllm_tiny.served_model_name
        choices = await completion_choices(model, 1)
        assert choices[0].logprobs and choices[0].logprobs.content[0].token.startswith("token_id:")

        # SFT through ART's frontend: checkpoint 0001 in ART's layout, served as name@1.
        await model.train_sft(
            [sft_trajectory("DE", "81.5"), sft_trajectory("FR", "64.0")],
            TrainSFTConfig(learning_rate=5e-3, batch_size=2),
        )
        checkpoint = tmp_path / ".art" / "proj" / "models" / "agent-rt" / "checkpoints" / "0001"
        assert (checkpoint / "adapter_config.json").is_file()
        assert (checkpoint / "adapter_model.safetensors").is_file()
        assert await model.get_step() == 1
        assert model.get_inference_name() == "agent-rt@1"
        assert "agent-rt@1" in await vllm_tiny.list_models()
        base_lp = (await completion_choices(model, 1))[0]
        assert base_lp.logprobs is not None

        # One GRPO step on real sampled choices: ART's advantages + loss, then checkpoint 0002.
        choices = await completion_choices(model, 4)
        group = art.TrajectoryGroup(
            [
                art.Trajectory(
                    messages_and_choices=[{"role": "user", "content": "Say something about energy."}, choice],
                    reward=float(index % 2),
                )
                for index, choice in enumerate(choices)
            ]
        )
        result = await backend.train(model, [group], learning_rate=1e-3)
        assert result.step == 2
        assert math.isfinite(result.metrics["loss/train"])
        assert result.checkpoint_path and Path(result.checkpoint_path).name == "0002"
        assert model.get_inference_name() == "agent-rt@2"
        assert "agent-rt@2" in await vllm_tiny.list_models()
        reply = await model.openai_client().chat.completions.create(
            model="agent-rt@2", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.choices[0].message is not None

        # Checkpoint deletion keeps what it is told and unloads the rest from vLLM.
        await backend._delete_checkpoint_files(model, [2])
        assert not checkpoint.exists()
        assert "agent-rt@1" not in await vllm_tiny.list_models()
    finally:
        await backend.close()
    # A shared server stays up; this model's adapters are gone from it.
    assert vllm_tiny.running
    assert not [name for name in await vllm_tiny.list_models() if name.startswith("agent-rt@")]


async def target_logprob(server, name: str, prompt_ids: list[int], target_ids: list[int]) -> float:
    """Sum of vLLM's logprobs of `target_ids` after `prompt_ids` under the served model `name`."""
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(
            f"{server.base_url}/completions",
            json={"model": name, "prompt": prompt_ids + target_ids, "max_tokens": 1, "prompt_logprobs": 0},
        )
    response.raise_for_status()
    entries = response.json()["choices"][0]["prompt_logprobs"][len(prompt_ids) :]
    return sum(entry[str(token)]["logprob"] for entry, token in zip(entries, target_ids, strict=True))


async def test_served_adapter_is_the_trained_one(vllm_tiny, tiny_model_dir: Path, tmp_path: Path) -> None:
    """After SFT, vLLM's adapter gives the trained answer a higher likelihood than the base does,
    and the same likelihood (float32 both sides) as the LoRA checkpoint evaluated in transformers."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from train.models import load_tokenizer

    backend = make_backend("torch", path=tmp_path / ".art", server=vllm_tiny)
    model = make_model("agent-lp", "proj", str(tiny_model_dir))
    messages = [{"role": "user", "content": "What is the price in DE?"}]
    answer = "The price in DE is 81.5 EUR/MWh."
    tokenizer = load_tokenizer(tiny_model_dir)
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    conversation = [*messages, {"role": "assistant", "content": answer}]
    full_ids = tokenizer.apply_chat_template(conversation, return_dict=True)["input_ids"]
    target_ids = full_ids[len(prompt_ids) : -1]  # the answer and <|im_end|>, not the newline after it
    try:
        await model.register(backend)
        before = await target_logprob(vllm_tiny, model.get_inference_name(), prompt_ids, target_ids)
        trajectory = art.Trajectory(
            messages_and_choices=[*messages, {"role": "assistant", "content": answer}], reward=1.0
        )
        for _ in range(2):
            await model.train_sft([trajectory] * 4, TrainSFTConfig(learning_rate=3e-3, batch_size=2))
        assert model.get_inference_name() == "agent-lp@2"
        after = await target_logprob(vllm_tiny, "agent-lp@2", prompt_ids, target_ids)

        checkpoint = tmp_path / ".art" / "proj" / "models" / "agent-lp" / "checkpoints" / "0002"
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        trained = PeftModel.from_pretrained(base, str(checkpoint)).eval()
        with torch.no_grad():
            logits = trained(input_ids=torch.tensor([full_ids[:-1]])).logits[0].log_softmax(-1)
        expected = sum(float(logits[len(prompt_ids) + i - 1, token]) for i, token in enumerate(target_ids))
        assert (before, after) == pytest.approx((before, expected), abs=0.05)
        assert after > before + 1.0
    finally:
        await backend.close()


async def test_wrong_base_model_is_refused(tmp_path: Path) -> None:
    backend = TorchBackend(path=tmp_path / ".art")
    (tmp_path / "notamodel").mkdir()
    for base in (str(tmp_path / "missing"), str(tmp_path / "notamodel"), "Qwen/Qwen3-8B"):
        with pytest.raises(BaseModelError):
            await make_model("bad", "proj", base).register(backend)
    await backend.close()


async def test_step_and_names_follow_checkpoints_on_disk(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Without any server: the step comes from ART's checkpoint folders; step 0 is the base."""
    backend = TorchBackend(path=tmp_path / ".art")
    model = make_model("resumed", "proj", str(tiny_model_dir))
    await art.Model.register(model, backend)  # training-only registration: no vLLM
    assert await model.get_step() == 0
    assert model.get_inference_name() == "resumed"
    (tmp_path / ".art" / "proj" / "models" / "resumed" / "checkpoints" / "0007").mkdir(parents=True)
    assert await model.get_step() == 7
    assert model.get_inference_name() == "resumed@7"
    assert model.get_inference_name(step=3) == "resumed@3"
    await backend.close()


def test_local_backend_is_refused_without_gpu_extra() -> None:
    from train.backends.local import BackendUnavailable, local_backend_missing

    reason = local_backend_missing()
    if reason is None:  # a GPU machine with the extra: the real LocalBackend is returned
        assert type(make_backend("local")).__name__ == "LocalBackend"
        return
    with pytest.raises(BackendUnavailable, match="--backend local"):
        make_backend("local")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope")  # type: ignore[arg-type]


def test_sampled_tool_calls_are_tokenised_once(tiny_model_dir: Path) -> None:
    """GRPO sequences hold exactly the generated tokens: a sampled tool call is not rendered twice."""
    from art.preprocessing.tokenize import tokenize_trajectory_groups
    from openai.types.chat.chat_completion import ChoiceLogprobs
    from openai.types.chat.chat_completion_message import ChatCompletionMessage
    from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

    from train.backends.compat import choices_as_sampled
    from train.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)

    def sampled(text: str, message: dict) -> Choice:
        ids = tokenizer.encode(text, add_special_tokens=False)
        tokens = [
            ChatCompletionTokenLogprob(token=f"token_id:{i}", logprob=-0.5, bytes=[], top_logprobs=[]) for i in ids
        ]
        return Choice(
            index=0,
            finish_reason="stop",
            message=ChatCompletionMessage.model_validate({"role": "assistant", **message}),
            logprobs=ChoiceLogprobs(content=tokens),
        )

    call = '<tool_call>\n{"name": "get_price", "arguments": {"zone": "DE"}}\n</tool_call><|im_end|>'
    parsed = {"id": "c1", "type": "function", "function": {"name": "get_price", "arguments": '{"zone": "DE"}'}}
    items = [
        {"role": "user", "content": "Price in DE?"},
        sampled(call, {"content": None, "tool_calls": [parsed]}),
        {"role": "tool", "tool_call_id": "c1", "content": "81"},
        sampled("It is 81.<|im_end|>", {"content": "It is 81."}),
    ]
    group = art.TrajectoryGroup([art.Trajectory(messages_and_choices=items, reward=r) for r in (1.0, 0.0)])
    (result, *_) = tokenize_trajectory_groups(tokenizer, choices_as_sampled([group]), False, True)
    text = tokenizer.decode(result.token_ids)
    assert text.count("<tool_call>") == 1
    assert text.endswith(
        f"<|im_start|>assistant\n{call}\n<|im_start|>user\n<tool_response>\n81\n</tool_response>"
        "<|im_end|>\n<|im_start|>assistant\nIt is 81.<|im_end|>"
    )
    trained = tokenizer.decode([t for t, m in zip(result.token_ids, result.assistant_mask, strict=True) if m])
    assert trained == call + "It is 81.<|im_end|>"
