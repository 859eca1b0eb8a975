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

from train.art_adapter import make_model
from train.backends import make_backend
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
        # ART's KL penalty towards an adapter on disk (train.grpo --kl: the warm start's). The policy
        # is that adapter, so the KL is zero; the base model (LoRA off) differs after the SFT.
        result = await backend.train(
            model, [group], learning_rate=1e-3, kl_penalty_coef=0.5, kl_ref_adapter_path=str(checkpoint)
        )
        assert abs(result.metrics["loss/kl_policy_ref"]) < 1e-6, result.metrics
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

    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {server.api_key}"}) as client:
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


def test_packed_group_members_score_as_if_alone(tiny_model_dir: Path) -> None:
    """One shared prompt, two completions packed behind it (ART's layout: each completion restarts
    from the prompt's last token): with the mask each completion's logprobs equal those of the
    completion run alone; without it the second one would see the first."""
    import torch
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.torch_service import _token_logprobs, packed_attention_mask

    fix_transformers_mask_patch()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rng = torch.Generator().manual_seed(0)
    prompt, first, second = (torch.randint(5, 1000, (n,), generator=rng) for n in (30, 7, 5))

    def shifted(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)

    def alone(completion: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([prompt, completion]).unsqueeze(0)
        positions = torch.arange(tokens.shape[1]).unsqueeze(0)
        logprobs, _ = _token_logprobs(model, tokens, positions, shifted(tokens))
        return logprobs[0, len(prompt) - 1 : -1]

    head = prompt[:-1]
    parts = [torch.cat([prompt[-1:], first]), torch.cat([prompt[-1:], second])]
    tokens = torch.cat([head, *parts]).unsqueeze(0)
    positions = torch.cat([torch.arange(len(head)), *[torch.arange(len(head), len(head) + len(p)) for p in parts]])
    group_ids = torch.tensor([1] * len(head) + [2] * len(parts[0]) + [3] * len(parts[1])).unsqueeze(0)
    parent_ids = torch.ones_like(group_ids)
    with torch.no_grad():
        mask = packed_attention_mask(group_ids, parent_ids, dtype=torch.float32)
        packed, _ = _token_logprobs(model, tokens, positions.unsqueeze(0), shifted(tokens), mask)
        unmasked, _ = _token_logprobs(model, tokens, positions.unsqueeze(0), shifted(tokens))
        first_alone, second_alone = alone(first), alone(second)
    start = len(head)
    second_at = start + len(parts[0])
    assert torch.allclose(packed[0, start : start + len(first)], first_alone, atol=1e-5)
    assert torch.allclose(packed[0, second_at : second_at + len(second)], second_alone, atol=1e-5)
    assert not torch.allclose(unmasked[0, second_at : second_at + len(second)], second_alone, atol=1e-3)


@pytest.mark.parametrize("attention", ["sdpa", "packed"])
def test_sft_batch_packed_behind_its_shared_prompt_gives_the_same_gradients(
    tiny_model_dir: Path, attention: str
) -> None:
    """Three examples with one 100-token untrained prompt: one packed forward pass gives the loss
    and the gradients of the three passes one by one (the packing is exact, only cheaper), with the
    dense mask (sdpa) and with prompt-by-prompt attention (packed, what the backend loads)."""
    import torch
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.packed_attention import register
    from train.backends.torch_service import _single_sft_piece, sft_backward, sft_pieces

    fix_transformers_mask_patch()
    attention = register() if attention == "packed" else attention
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    rng = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, 1000, (100,), generator=rng)
    examples = []
    for length in (12, 20, 9):
        rest = torch.randint(5, 1000, (length,), generator=rng)
        ids = torch.cat([prompt, rest])
        labels = torch.full_like(ids, -100)
        labels[len(prompt) + 2 :] = ids[len(prompt) + 2 :]  # the user question part is not trained
        examples.append({"input_ids": ids.unsqueeze(0), "labels": labels.unsqueeze(0)})
    trainable = sum(int((e["labels"] != -100).sum()) for e in examples)

    def run(pieces: list[dict[str, torch.Tensor]]) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        loss = sft_backward(model, pieces, trainable)
        return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    pieces = sft_pieces(examples)
    assert len(pieces) == 1 and len(pieces[0]["input_ids"]) == 99 + 13 + 21 + 10  # the prompt once
    packed_loss, packed_grad = run(pieces)
    alone_loss, alone_grad = run([_single_sft_piece(e) for e in examples])
    assert math.isclose(packed_loss, alone_loss, rel_tol=1e-5)
    assert torch.allclose(packed_grad, alone_grad, atol=1e-6, rtol=1e-4)
    # Nothing shared (different prompts): one pass per example.
    other = {"input_ids": examples[0]["input_ids"].flip(1), "labels": examples[0]["labels"].flip(1)}
    assert len(sft_pieces([examples[0], other])) == 2


def test_packed_attention_scores_and_trains_exactly_like_the_dense_mask(tiny_model_dir: Path) -> None:
    """ART's RL packing of two groups (a prompt, then its completions, each restarting at the prompt's
    end): prompt-by-prompt attention gives the logprobs and gradients of the dense packed mask."""
    import torch
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.packed_attention import PackedLayout, register, uses_packed_attention
    from train.backends.torch_service import _token_logprobs, packed_attention_mask

    fix_transformers_mask_patch()
    dense = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    packed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=register())
    assert uses_packed_attention(packed) and not uses_packed_attention(dense)
    # (group id, parent id, length, first position) per run: prompt 11 with two completions, prompt 7 with one.
    runs = [(11, 11, 40, 0), (-3, 11, 9, 40), (42, 11, 6, 40), (7, 7, 25, 0), (99, 7, 8, 25)]
    group_ids = torch.cat([torch.full((n,), g) for g, _, n, _ in runs]).unsqueeze(0)
    parent_ids = torch.cat([torch.full((n,), p) for _, p, n, _ in runs]).unsqueeze(0)
    positions = torch.cat([torch.arange(start, start + n) for _, _, n, start in runs]).unsqueeze(0)
    tokens = torch.randint(5, 1000, group_ids.shape, generator=torch.Generator().manual_seed(3))
    next_tokens = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
    layout = PackedLayout.from_ids(group_ids, parent_ids)
    assert layout is not None and [s.parent for s in layout.segments] == [None, (0, 40), (0, 40), None, (55, 80)]

    def run(model: torch.nn.Module, mask: object) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        logprobs, entropy = _token_logprobs(model, tokens, positions, next_tokens, mask)
        (logprobs.sum() + entropy.sum()).backward()
        return logprobs.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    dense_logprobs, dense_grad = run(dense, packed_attention_mask(group_ids, parent_ids, dtype=torch.float32))
    packed_logprobs, packed_grad = run(packed, layout)
    causal_logprobs, _ = run(dense, None)
    assert torch.allclose(packed_logprobs, dense_logprobs, atol=1e-5)
    assert torch.allclose(packed_grad, dense_grad, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(causal_logprobs, dense_logprobs, atol=1e-3)  # the layout matters
    # Layouts it cannot run prompt by prompt: a completion before its prompt, a group in two runs.
    assert PackedLayout.from_ids(torch.tensor([[5, 5, 1, 1]]), torch.tensor([[1, 1, 1, 1]])) is None
    assert PackedLayout.from_ids(torch.tensor([[1, 1, 2, 1]]), torch.tensor([[1, 1, 1, 1]])) is None


def test_sft_batch_with_detached_prompt_matches_per_example_cached_prompt(tiny_model_dir: Path) -> None:
    """`detach_prompt`: the packed batch gives the exact loss, and the gradients of running each
    example on top of the prompt's key/value cache computed without autograd (HF's own caching)."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.torch_service import sft_backward, sft_pieces

    fix_transformers_mask_patch()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rng = torch.Generator().manual_seed(2)
    prompt = torch.randint(5, 1000, (80,), generator=rng)
    rests = [torch.randint(5, 1000, (length,), generator=rng) for length in (15, 7, 11)]
    examples = []
    for rest in rests:
        ids = torch.cat([prompt, rest])
        labels = torch.full_like(ids, -100)
        labels[len(prompt) + 1 :] = ids[len(prompt) + 1 :]
        examples.append({"input_ids": ids.unsqueeze(0), "labels": labels.unsqueeze(0)})
    trainable = sum(int((e["labels"] != -100).sum()) for e in examples)
    params = [p for p in model.parameters() if p.requires_grad]

    def grads() -> torch.Tensor:
        flat = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
        model.zero_grad()
        return flat

    pieces = sft_pieces(examples)
    exact_loss = sft_backward(model, pieces, trainable)
    exact_grad = grads()
    cached_loss = sft_backward(model, pieces, trainable, detach_prompt=True)
    cached_grad = grads()

    # Reference: each example alone, its tokens after the prompt fed with a fresh no-grad prompt cache.
    reference_loss = 0.0
    for rest in rests:
        with torch.no_grad():
            cache = model(input_ids=prompt[:-1].unsqueeze(0), past_key_values=DynamicCache(), use_cache=True)
        tokens = torch.cat([prompt[-1:], rest])
        logits = model(input_ids=tokens.unsqueeze(0), past_key_values=cache.past_key_values).logits[0]
        # logits at position i predict tokens[i+1]; tokens after the first rest token are trained
        loss = torch.nn.functional.cross_entropy(logits[1:-1], tokens[2:], reduction="sum") / trainable
        loss.backward()
        reference_loss += float(loss.detach())
    reference_grad = grads()

    assert math.isclose(cached_loss, exact_loss, rel_tol=1e-5)
    assert math.isclose(cached_loss, reference_loss, rel_tol=1e-5)
    assert torch.allclose(cached_grad, reference_grad, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(cached_grad, exact_grad, atol=1e-6, rtol=1e-4)  # the prompt's share is gone


def test_rl_loss_from_sampled_positions_only_equals_the_full_computation(tiny_model_dir: Path) -> None:
    """The LM head runs only where the loss reads it; ART's loss and gradients do not change."""
    import torch
    from art.loss import loss_fn, shift_tensor
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.torch_service import _token_logprobs

    fix_transformers_mask_patch()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rng = torch.Generator().manual_seed(2)
    size = 60
    tokens = torch.randint(5, 1000, (1, size), generator=rng)
    sampled = torch.zeros(1, size)
    sampled[0, 30:42] = 1
    sampled[0, 50:57] = 1
    logprobs = torch.where(sampled.bool(), -torch.rand(1, size, generator=rng), torch.nan)
    inputs = {
        "tokens": tokens,
        "input_pos": torch.arange(size).unsqueeze(0),
        "assistant_mask": sampled.bool(),
        "logprobs": logprobs,
        "advantages": torch.randn(1, size, generator=rng),
        "weights": torch.ones(1, size),
        "group_ids": torch.ones(1, size, dtype=torch.long),
        "parent_ids": torch.ones(1, size, dtype=torch.long),
    }
    next_tokens = shift_tensor(tokens, 0)
    mask = sampled[0].bool()
    keep = (mask | torch.cat([mask[1:], mask.new_zeros(1)])).nonzero().squeeze(-1)

    def run(keep_positions: torch.Tensor | None) -> tuple[float, float, torch.Tensor]:
        model.zero_grad()
        new, entropies = _token_logprobs(model, tokens, inputs["input_pos"], next_tokens, None, keep_positions)
        loss = loss_fn(inputs, new, None, entropies, {})  # type: ignore[arg-type]
        loss.policy_loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return float(loss.policy_loss.detach()), float(loss.entropy.detach()), grads

    full, kept = run(None), run(keep)
    assert len(keep) < size / 2
    assert math.isclose(full[0], kept[0], rel_tol=1e-5) and math.isclose(full[1], kept[1], rel_tol=1e-5)
    assert torch.allclose(full[2], kept[2], atol=1e-6, rtol=1e-4)
