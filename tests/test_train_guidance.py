"""GRPO's update: gradients accumulated over a step, off-policy demonstrations in a group, and the
paired comparison that reports results. Real ART tokenisation and loss on a tiny random model."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from contracts import Task, Trajectory
from tests.fixtures.judge_data import PRICE, make_trajectory
from train.compare import bootstrap_interval, compare_runs, format_comparison, mcnemar_exact

RIGHT = [[("get_price", {"hub": "Henry Hub", "date": "2025-03-04"})]]
WRONG = [[("get_storage", {"region": "East"})]]


# --------------------------------------------------------------------------- paired comparison


def test_mcnemar_exact_on_hand_made_counts() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert math.isclose(mcnemar_exact(9, 1), 2 * (1 + 10) / 2**10)  # 0.0215
    assert math.isclose(mcnemar_exact(1, 9), mcnemar_exact(9, 1))  # two-sided
    assert math.isclose(mcnemar_exact(5, 0), 2 / 2**5)  # 0.0625: five fixes alone are not enough
    assert mcnemar_exact(3, 3) == 1.0


def test_bootstrap_interval_brackets_the_difference() -> None:
    before = [False] * 10 + [True] * 10
    after = [True] * 8 + [False] * 2 + [True] * 10  # 8 fixed, none lost: +40 points
    low, high = bootstrap_interval(before, after, samples=2000)
    assert 0.0 < low < 0.4 < high <= 1.0
    assert bootstrap_interval([True] * 5, [True] * 5) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_interval([True], [True, False])


def _task(index: int, kind: str) -> Task:
    return PRICE.model_copy(update={"id": f"t{index:02d}", "kind": kind})


def test_compare_runs_counts_fixed_and_lost_per_kind() -> None:
    tasks = [_task(i, "single" if i < 8 else "parallel") for i in range(12)]
    # before: t00-t01 solved; after: t02-t10 fixed, t01 lost (9 fixed, 1 lost)
    before = [make_trajectory(t, RIGHT if i < 2 else WRONG, success=i < 2) for i, t in enumerate(tasks)]
    after = [make_trajectory(t, RIGHT if i != 1 else WRONG, success=i != 1) for i, t in enumerate(tasks[:11])]
    result = compare_runs(before, after, before_label="warm", after_label="grpo")
    assert result.n_tasks == 11 and result.only_one == 1  # t11 ran only before
    assert result.fixed == [f"t{i:02d}" for i in range(2, 11)] and result.lost == ["t01"]
    assert math.isclose(result.p_mcnemar, mcnemar_exact(9, 1)) and result.significant
    assert math.isclose(result.diff, 8 / 11)
    kinds = {row.kind: row for row in result.by_kind}
    assert kinds["single"].n == 8 and kinds["parallel"].n == 3
    assert kinds["parallel"].success_before == 0.0 and kinds["parallel"].success_after == 1.0
    # plan success follows the calls, not the verdict: the right call is a plan success
    assert kinds["single"].plan_after == 7 / 8 and kinds["single"].plan_before == 2 / 8
    text = format_comparison(result)
    assert "fixed 9, lost 1" in text and "p = 0.0215" in text


# --------------------------------------------------------------------------- demonstrations in a group


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from train.art_adapter import make_model
    from train.guidance import policy_tokenizer

    return policy_tokenizer(make_model("agent", "energy", str(tiny_model_dir)))


def _sampled(tokenizer: Any, traj: Trajectory, logprob: float) -> Trajectory:
    """`traj` as if the policy had sampled it: each assistant turn's token ids with a logprob."""
    from train.guidance import turn_tokens

    entries = turn_tokens(tokenizer, traj.messages, traj.tools)
    for entry in entries:
        entry.logprobs = [logprob] * len(entry.token_ids)
    return traj.model_copy(update={"logprobs": entries})


def _group(tokenizer: Any, rewards: tuple[float, ...] = (0.2, 0.3, 0.1)) -> tuple[list[Trajectory], Trajectory]:
    from train.guidance import as_group_member

    failed = [
        _sampled(tokenizer, make_trajectory(PRICE, WRONG, success=False, sample=k, score=r), -0.7)
        for k, r in enumerate(rewards)
    ]
    oracle = make_trajectory(PRICE, RIGHT, answer="The answer is 4.12.", success=True, score=1.0)
    demo = as_group_member(oracle, sample=len(rewards), tokenizer=tokenizer)
    return failed, demo


def test_a_demonstration_joins_its_group_as_an_off_policy_member(tokenizer: Any) -> None:
    failed, demo = _group(tokenizer)
    assert demo.off_policy and demo.sample == 3 and demo.id.endswith(":s3") and demo.task_id == PRICE.id
    assert demo.logprobs and all(value is None for entry in demo.logprobs for value in entry.logprobs)
    again = Trajectory.model_validate_json(demo.model_dump_json())  # the record round-trips
    assert again.off_policy and again.logprobs == demo.logprobs
    from train.guidance import unsolved

    assert unsolved(failed) == [PRICE.id]
    assert unsolved([*failed, demo]) == [PRICE.id]  # a demonstration is not the policy's success


def test_guided_group_tokenises_to_the_template_with_signed_advantages(tokenizer: Any) -> None:
    """Through ART's own tokenisation: the demonstration's tokens are exactly the chat template's
    rendering of its conversation, trained (assistant mask) with no sampled logprobs (NaN, scored
    by the trainer); its advantage is positive and every failed sample's negative."""
    import art
    from art.preprocessing.tokenize import tokenize_trajectory_groups

    from train.art_adapter import to_art_trajectory
    from train.backends.compat import choices_as_sampled

    failed, demo = _group(tokenizer)
    group = art.TrajectoryGroup([to_art_trajectory(traj) for traj in [*failed, demo]])
    results = list(tokenize_trajectory_groups(tokenizer, choices_as_sampled([group]), False, True, False))
    by_id = {result.trajectory.metadata["id"]: result for result in results}
    guided = by_id[demo.id]
    rendered = tokenizer.apply_chat_template(demo.messages, tools=demo.tools, tokenize=False)
    assert rendered.startswith(tokenizer.decode(guided.token_ids))
    trained = [i for i, m in enumerate(guided.assistant_mask) if m]
    assert len(trained) == sum(len(entry.token_ids) for entry in demo.logprobs)
    assert all(math.isnan(guided.logprobs[i]) for i in trained)
    assert guided.advantage > 0
    for traj in failed:
        sampled = by_id[traj.id]
        assert sampled.advantage < 0
        assert all(sampled.logprobs[i] == pytest.approx(-0.7) for i, m in enumerate(sampled.assistant_mask) if m)


@pytest.mark.parametrize("gamma", [0.1, 0.0])
def test_off_policy_tokens_get_luffy_shaping_in_arts_loss(tiny_model_dir: Path, gamma: float) -> None:
    """ART's CISPO loss with the demonstration's old logprobs from `off_policy_logprobs` has the
    gradient of LUFFY's objective, -A * p / (p + gamma), on off-policy tokens (of -A * log p when
    gamma is 0), and leaves sampled tokens as they were."""
    import torch
    from art.loss import loss_fn, shift_tensor
    from transformers import AutoModelForCausalLM

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.torch_service import _token_logprobs, off_policy_logprobs

    fix_transformers_mask_patch()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rng = torch.Generator().manual_seed(3)
    size = 48
    tokens = torch.randint(5, 1000, (1, size), generator=rng)
    sampled = torch.zeros(1, size, dtype=torch.bool)
    sampled[0, 10:20] = True  # on-policy, with sampled logprobs
    sampled[0, 30:44] = True  # off-policy: trained, no logprobs
    logprobs = torch.full((1, size), torch.nan)
    logprobs[0, 10:20] = -torch.rand(10, generator=rng)
    advantages = torch.zeros(1, size)
    advantages[0, 10:20], advantages[0, 30:44] = -0.5, 1.5
    inputs = {
        "tokens": tokens,
        "input_pos": torch.arange(size).unsqueeze(0),
        "assistant_mask": sampled,
        "logprobs": logprobs,
        "advantages": advantages,
        "weights": torch.ones(1, size),
        "group_ids": torch.ones(1, size, dtype=torch.long),
        "parent_ids": torch.ones(1, size, dtype=torch.long),
    }
    next_tokens = shift_tensor(tokens, 0)

    def grads(loss: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    new, entropies = _token_logprobs(model, tokens, inputs["input_pos"], next_tokens)
    shaped = off_policy_logprobs(inputs["logprobs"], sampled, new, gamma)
    assert torch.equal(shaped[0, 10:20], logprobs[0, 10:20])
    arts = grads(loss_fn(inputs | {"logprobs": shaped}, new, None, entropies, {}, reduction="sum").policy_loss)

    new, _ = _token_logprobs(model, tokens, inputs["input_pos"], next_tokens)
    old = shift_tensor(logprobs, float("nan"))
    adv = shift_tensor(advantages, 0.0)
    mask = shift_tensor(sampled, False)
    on, off = mask & ~torch.isnan(old), mask & torch.isnan(old)
    ratio = torch.exp(new - torch.nan_to_num(old)).detach().clamp(0, 5)
    objective = -(ratio * adv * new)[on].sum()
    p = new.exp()
    objective = objective - (adv * (p / (p + gamma) if gamma else new))[off].sum()
    assert torch.allclose(arts, grads(objective), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- one update per step


def _tokenized(tokenizer: Any, groups: list[list[Trajectory]]) -> list[Any]:
    import art
    from art.preprocessing.tokenize import tokenize_trajectory_groups

    from train.art_adapter import to_art_trajectory
    from train.backends.compat import choices_as_sampled

    art_groups = [art.TrajectoryGroup([to_art_trajectory(traj) for traj in group]) for group in groups]
    return list(tokenize_trajectory_groups(tokenizer, choices_as_sampled(art_groups), False, True, False))


def _packed(tokenizer: Any, results: list[Any], seq_len: int, out: Path) -> Any:
    from art.preprocessing.pack import packed_tensors_from_tokenized_results, packed_tensors_to_dir

    packed = packed_tensors_from_tokenized_results(results, seq_len, pad_token_id=tokenizer.eos_token_id, verbosity=0)
    return packed_tensors_to_dir(packed, str(out))


def _step_gradients(tiny_model_dir: Path, disk: Any, out: Path, accumulate: int | None) -> list[Any]:
    """Run one real `TorchService.train` step; the flat LoRA gradient at each optimizer step."""
    import torch
    from art.types import TrainConfig

    from train.backends.compat import fix_transformers_mask_patch
    from train.backends.settings import LoraSettings, TorchBackendSettings
    from train.backends.torch_service import RLUpdate, TorchService

    fix_transformers_mask_patch()
    service = TorchService(
        model_name="agent",
        base_model=str(tiny_model_dir),
        output_dir=str(out),
        settings=TorchBackendSettings(path=out, lora=LoraSettings(rank=4, alpha=8), num_threads=2),
    )
    service.rl_update = RLUpdate(accumulate=accumulate)
    seen: list[torch.Tensor] = []
    step = service._step_optimizer

    def recording(optimizer: Any) -> float:
        seen.append(torch.cat([p.grad.flatten().clone() for p in service._peft.parameters() if p.requires_grad]))
        return step(optimizer)

    service._step_optimizer = recording  # type: ignore[method-assign]

    async def run() -> None:
        async for _ in service.train(disk, TrainConfig(learning_rate=1e-4), {}):
            pass
        await service.aclose()

    asyncio.run(run())
    return seen


def test_gradients_accumulated_over_sequences_equal_one_big_batch(
    tiny_model_dir: Path, tokenizer: Any, tmp_path: Path
) -> None:
    """Three groups packed into one sequence, or one group per sequence with gradients accumulated
    over all of them: the same single update (the loss normalised by the window's tokens). One
    optimizer step per sequence (accumulate 1) is three different, smaller updates."""
    groups = []
    for index in range(3):
        task = PRICE.model_copy(update={"id": f"price{index}", "question": f"{PRICE.question} (case {index})"})
        members = [
            _sampled(
                tokenizer,
                make_trajectory(task, RIGHT if k == 0 else WRONG, success=k == 0, sample=k, score=r),
                -0.4 - k / 10,
            )
            for k, r in enumerate((1.0, 0.2, 0.4))
        ]
        groups.append(members)
    results = _tokenized(tokenizer, groups)
    longest = max(len(result.token_ids) for result in results)
    one = _packed(tokenizer, results, seq_len=8 * longest, out=tmp_path / "one")
    many = _packed(tokenizer, results, seq_len=longest + 8, out=tmp_path / "many")
    assert one["num_sequences"] == 1 and many["num_sequences"] >= 3

    (big,) = _step_gradients(tiny_model_dir, one, tmp_path / "a", accumulate=None)
    (accumulated,) = _step_gradients(tiny_model_dir, many, tmp_path / "b", accumulate=None)
    assert float(big.norm()) > 0
    assert (big - accumulated).norm() <= 1e-4 * big.norm()
    per_sequence = _step_gradients(tiny_model_dir, many, tmp_path / "c", accumulate=1)
    assert len(per_sequence) == many["num_sequences"]
    assert (per_sequence[0] - big).norm() > 0.05 * big.norm()
