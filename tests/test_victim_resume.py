"""A victim cut off between epochs goes on from its saved state and ends as if it never stopped."""

import functools
import json

import pytest
import torch

from evaluation_helpers import TOY_SPEC, write_toy_folder
from unseg.data.segmentation import DatasetSpec
from unseg.evaluation import EvaluationConfig, run_evaluation
from unseg.evaluation import protocol
from unseg.evaluation.protocol import CHECKPOINTS
from unseg.evaluation.resume import EpochCheckpoint
from unseg.evaluation.training import SplitTensors, TrainSchedule, train_victim
from unseg.evaluation.victims import parse_victim
from unseg.models.checkpoint import CheckpointError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = DatasetSpec(name="toy", num_classes=3, ignore_index=None, class_names=("bg", "a", "b"),
                   objects="foreground", primary_metric="miou")


class Killed(Exception):
    """Stands for the process being killed right after a state file was written."""


@pytest.fixture
def kill_after_first_save(monkeypatch):
    """``arm()``: from then on, the next state write also ends the run (as a kill just after it would)."""
    save = EpochCheckpoint.save

    def save_then_die(self, *args, **kwargs):
        if save(self, *args, **kwargs):
            monkeypatch.setattr(EpochCheckpoint, "save", save)
            raise Killed
        return False

    return lambda: monkeypatch.setattr(EpochCheckpoint, "save", save_then_die)


def _split(seed: int) -> SplitTensors:
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):
        top, left = (int(v) for v in torch.randint(0, 14, (2,), generator=generator))
        masks[i, top : top + 12, left : left + 14] = 1 + i % 2
    return SplitTensors(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8, generator=generator), masks)


@pytest.mark.parametrize("victim", ["unet", "sam"])
def test_a_killed_victim_resumes_to_the_same_history_and_weights(victim, tmp_path, kill_after_first_save):
    train, test = _split(0), _split(1)
    schedule = TrainSchedule(epochs=3, batch_size=2)
    args = (parse_victim(victim), SPEC, train, test, schedule, torch.device("cpu"), 0)
    straight = train_victim(*args, progress=None)

    checkpoint = EpochCheckpoint(tmp_path / "state.safetensors", identity={"victim": victim}, every_s=0)
    kill_after_first_save()
    with pytest.raises(Killed):
        train_victim(*args, progress=None, checkpoint=checkpoint)
    saved = json.loads(json.dumps(straight.history[:1]))
    assert checkpoint.restore(*_fresh_state(victim))[0] == saved  # the state after epoch 1

    resumed = train_victim(*args, progress=None, checkpoint=EpochCheckpoint(checkpoint.path, checkpoint.identity, every_s=0))
    assert resumed.history == straight.history and resumed.final == straight.final
    for name, weight in straight.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name


def _fresh_state(victim: str):
    """A new victim, optimiser, schedule (none for the interactive victim, which trains at a constant
    rate) and generator to load a state into."""
    from unseg.evaluation.victims import build_victim

    model = build_victim(parse_victim(victim), SPEC.num_classes)
    optimizer = torch.optim.Adam(model.parameters())
    schedule = None if parse_victim(victim).interactive else torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    return model, optimizer, schedule, torch.Generator()


def test_a_state_of_another_cell_is_refused_and_none_means_from_scratch(tmp_path, kill_after_first_save):
    args = (parse_victim("unet"), SPEC, _split(0), _split(1), TrainSchedule(epochs=2, batch_size=2),
            torch.device("cpu"), 0)
    path = tmp_path / "checkpoints" / "state.safetensors"
    assert EpochCheckpoint(path, {"cell": "a"}).restore(*_fresh_state("unet")) == ([], 0.0)
    kill_after_first_save()
    with pytest.raises(Killed):
        train_victim(*args, progress=None, checkpoint=EpochCheckpoint(path, {"cell": "a"}, every_s=0))
    with pytest.raises(CheckpointError, match="another cell"):
        train_victim(*args, progress=None, checkpoint=EpochCheckpoint(path, {"cell": "b"}, every_s=0))
    EpochCheckpoint(path, {"cell": "a"}).remove()
    assert not path.parent.exists()  # the emptied folder goes too


def test_a_state_with_a_learning_rate_schedule_is_refused_without_one(tmp_path):
    model, optimizer, schedule, generator = _fresh_state("unet")
    checkpoint = EpochCheckpoint(tmp_path / "state.safetensors", {}, every_s=0)
    assert checkpoint.save(model, optimizer, schedule, generator, history=[], seconds=0.0)
    with pytest.raises(CheckpointError, match="learning-rate schedule"):
        checkpoint.restore(model, optimizer, None, generator)


def test_no_state_is_written_more_often_than_every_s(tmp_path):
    state = _fresh_state("unet")
    checkpoint = EpochCheckpoint(tmp_path / "state.safetensors", {}, every_s=3600)
    assert not checkpoint.save(*state, history=[], seconds=0.0) and not checkpoint.path.exists()
    assert EpochCheckpoint(checkpoint.path, {}, every_s=0).save(*state, history=[], seconds=0.0)


def test_evaluate_rerun_finishes_a_killed_cell_from_its_state(tmp_path, monkeypatch, kill_after_first_save):
    write_toy_folder(tmp_path / "data", train=4, test=2, spec=TOY_SPEC)
    monkeypatch.setattr(protocol, "EpochCheckpoint", functools.partial(EpochCheckpoint, every_s=0))
    config = EvaluationConfig(data_root=str(tmp_path / "data"), datasets=("toy",), victims=("unet",), methods=("clean",),
                              defences=("none",), epochs=3, batch_size=2, image_height=32, progress=False)
    straight = run_evaluation(config, tmp_path / "straight")
    assert not (tmp_path / "straight" / CHECKPOINTS).exists()
    kill_after_first_save()
    with pytest.raises(Killed):
        run_evaluation(config, tmp_path / "killed")
    assert not json.loads((tmp_path / "killed" / "results.json").read_text())["cells"]
    assert len(list((tmp_path / "killed" / CHECKPOINTS).glob("*.safetensors"))) == 1
    resumed = run_evaluation(config, tmp_path / "killed")
    (key, cell), = straight["cells"].items()
    assert resumed["cells"][key]["history"] == cell["history"]
    assert resumed["cells"][key]["final"] == cell["final"]
    assert not (tmp_path / "killed" / CHECKPOINTS).exists()
