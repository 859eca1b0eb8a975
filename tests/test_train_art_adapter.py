"""train.art_adapter: ART's folder layout spelled once, and finished trajectories as ART groups."""

from __future__ import annotations

from pathlib import Path

from contracts import Task, Trajectory, TurnLogprobs, TurnStats
from train.backends.layout import checkpoint_dir, checkpoint_steps, checkpoints_dir, model_dir


def test_layout_matches_arts_own_paths(tmp_path: Path) -> None:
    from art.utils.get_model_step import get_step_from_dir
    from art.utils.output_dirs import get_output_dir_from_model_properties, get_step_checkpoint_dir

    folder = model_dir(tmp_path, "proj", "agent")
    assert str(folder) == get_output_dir_from_model_properties("proj", "agent", str(tmp_path))
    assert str(checkpoint_dir(folder, 7)) == get_step_checkpoint_dir(str(folder), 7)
    assert checkpoints_dir(folder) == checkpoint_dir(folder, 7).parent
    for name in ("0001", "0012", ".tmp-0013-abcd"):
        (checkpoints_dir(folder) / name).mkdir(parents=True)
    (checkpoints_dir(folder) / "0099").write_text("a file, not a checkpoint")
    assert checkpoint_steps(folder) == [1, 12]
    assert max(checkpoint_steps(folder)) == get_step_from_dir(str(folder))
    assert checkpoint_steps(tmp_path / "missing") == []


def _member(sample: int, reward: float) -> Trajectory:
    task = Task(id="t1", question="What is the price?")
    return Trajectory(
        id=f"t1-{sample}",
        env="energy",
        task=task,
        task_id="t1",
        sample=sample,
        group="t1",
        messages=[
            {"role": "user", "content": "What is the price?"},
            {"role": "assistant", "content": "42"},
        ],
        reward=reward,
        turns=[TurnStats(finish_reason="stop")],
        logprobs=[TurnLogprobs(message_index=1, token_ids=[19, 17], logprobs=[-0.5, -0.25], tokens=["4", "2"])],
    )


def test_art_groups_are_built_from_finished_trajectories_in_order() -> None:
    import art

    from train.art_adapter import art_groups

    groups = art_groups([[_member(0, 1.0), _member(1, 0.0), _member(2, 0.5)], [_member(3, 0.2)]])
    assert all(isinstance(group, art.TrajectoryGroup) for group in groups)
    assert [[traj.metadata["sample"] for traj in group] for group in groups] == [[0, 1, 2], [3]]
    assert [traj.reward for traj in groups[0]] == [1.0, 0.0, 0.5]
    choice = groups[0].trajectories[0].messages_and_choices[1]
    assert [token.token for token in choice.logprobs.content] == ["token_id:19", "token_id:17"]
    assert groups[0].exceptions == []
