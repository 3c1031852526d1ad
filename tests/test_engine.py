from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import pytest
import torch

from common.config import TrainConfig
from common.data.arrays import EcgArrays, concat, load_split
from common.data.store import SiteStore
from common.evaluation.metrics import MetricError
from common.models import create_model, list_models
from common.models.blocks import EcgClassifier
from common.training.engine import (
    AuxiliaryTargetError,
    auxiliary_matrix,
    build_model,
    cosine_factor,
    fit,
    predict,
    scoring_state,
    train_epochs,
)

CFG = TrainConfig(batch_size=16, lr=3e-3, seed=0, num_threads=1)


def _toy(n: int = 64, seed: int = 0) -> EcgArrays:
    """Positives carry a 0.5 mV offset on V2: trivially separable."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(np.float32)
    x = rng.normal(0, 0.1, (n, 12, 200)).astype(np.float32)
    x[y == 1, 7] += 0.5
    return EcgArrays(x, np.zeros((n, 5), np.float32), y, pd.DataFrame({"record_id": range(n)}))


def test_training_learns_a_separable_toy_task() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1d")
    data = _toy()

    losses = train_epochs(model, data, CFG, epochs=4, seed=0)
    scores = predict(model, _toy(seed=1))

    assert losses[-1] < losses[0]
    assert scores.shape == (64,) and ((scores >= 0) & (scores <= 1)).all()
    assert scores[_toy(seed=1).y == 1].min() > scores[_toy(seed=1).y == 0].max()


def test_training_is_reproducible_from_the_seed() -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("cnn1d")
        train_epochs(model, _toy(), CFG, epochs=1, seed=5)
        states.append(model.state_dict())

    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_no_positives_is_a_clear_error() -> None:
    data = _toy()
    no_pos = EcgArrays(data.x, data.demo, np.zeros_like(data.y), data.meta)

    with pytest.raises(MetricError, match="no AMI positives"):
        train_epochs(create_model("cnn1d"), no_pos, CFG, epochs=1, seed=0)


def test_fit_keeps_the_best_validation_epoch() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1d")

    result = fit(model, _toy(), _toy(seed=2), CFG, epochs=3)

    best = max(h.val_auroc for h in result.history if h.val_auroc is not None)
    assert result.best_val_auroc == best
    assert result.history[result.best_epoch - 1].val_auroc == best
    assert result.samples_seen == 3 * 64


def test_sites_at_different_rates_pool_after_resampling(tiny_cohort: list[SiteStore]) -> None:
    parts = [load_split(s, "train", 100) for s in tiny_cohort]

    pooled = concat(parts)

    assert {p.x.shape[-1] for p in parts} == {1000}
    assert len(pooled) == sum(len(p) for p in parts)
    assert pooled.demo.shape == (len(pooled), 5)
    assert set(pooled.meta["split"]) == {"train"}


def test_focal_loss_matches_a_hand_computed_case() -> None:
    from common.training.engine import FocalLoss

    logits, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_t = torch.tensor([0.5, 1 - torch.sigmoid(torch.tensor(2.0)).item()])

    loss = FocalLoss(2.0, torch.tensor(3.0))(logits, y)

    expected = ((1 - p_t) ** 2 * bce * torch.tensor([3.0, 1.0])).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_random_crops_are_windows_of_the_record() -> None:
    from common.training.engine import random_crops

    x = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)

    crops = random_crops(x, 4, torch.Generator().manual_seed(0))

    assert crops.shape == (2, 3, 4)
    for b in range(2):
        start = int(crops[b, 0, 0] - x[b, 0, 0])
        assert torch.equal(crops[b], x[b, :, start : start + 4])


def _records(n: int = 400, t: int = 1000) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).normal(0, 2.0, (n, 12, t)).astype(np.float32))


def test_augmentation_off_returns_the_batch_and_draws_nothing() -> None:
    from common.training.engine import augment

    x, gen = _records(4), torch.Generator().manual_seed(3)
    before = gen.get_state()

    out = augment(x, TrainConfig(), gen)

    assert out is x
    assert torch.equal(gen.get_state(), before)


def test_augmented_gain_is_one_log_normal_factor_per_record_and_lead() -> None:
    from common.training.engine import augment

    x = _records()

    ratio = augment(x, TrainConfig(augment_gain=0.2), torch.Generator().manual_seed(0)) / x

    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-4)
    assert float(ratio[..., 0].log().std()) == pytest.approx(0.2, rel=0.05)
    assert float(ratio[..., 0].log().mean()) == pytest.approx(0.0, abs=0.01)


def test_augmented_noise_is_white_and_sized_by_each_leads_sd() -> None:
    from common.training.engine import augment

    x = _records(50)
    x[:, 3] *= 10  # a lead ten times larger gets ten times the noise

    added = augment(x, TrainConfig(augment_noise=0.1), torch.Generator().manual_seed(0)) - x

    share = added.std(dim=-1) / x.std(dim=-1)
    assert float(share.mean()) == pytest.approx(0.1, rel=0.02)
    lag1 = (added[..., 1:] * added[..., :-1]).mean() / added.pow(2).mean()
    assert abs(float(lag1)) < 0.01


def test_augmented_wander_is_a_slow_sway_of_the_set_size() -> None:
    from common.training.engine import augment

    x = _records(40, t=6000)  # 60 s at 100 Hz: the spectrum resolves 1/60 Hz
    cfg = TrainConfig(augment_wander=0.3, target_fs=100)

    added = (augment(x, cfg, torch.Generator().manual_seed(0)) - x).numpy().astype(np.float64)

    peak = np.abs(added).max(axis=-1) / x.std(dim=-1).numpy()
    assert np.allclose(peak, 0.3, rtol=0.01)
    freqs = np.fft.rfftfreq(added.shape[-1], d=1 / 100)
    dominant = freqs[np.abs(np.fft.rfft(added, axis=-1)).argmax(axis=-1)]
    assert dominant.min() >= 0.1 - 1 / 60 and dominant.max() <= 0.5 + 1 / 60
    assert np.unique(dominant[:, 0]).size > 5  # each record its own rate


def test_augmented_training_repeats_from_its_seed_and_differs_from_plain() -> None:
    cfg = CFG.model_copy(update={"augment_gain": 0.1, "augment_noise": 0.05, "augment_wander": 0.1})
    states = []
    for run_cfg in (cfg, cfg, CFG):
        torch.manual_seed(0)
        model = create_model("cnn1d")
        train_epochs(model, _toy(), run_cfg, epochs=1, seed=5)
        states.append(model.state_dict())

    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_windows_cover_the_record_and_predictions_aggregate_them() -> None:
    from common.training.engine import window_starts

    assert window_starts(1000, 250) == [0, 125, 250, 375, 500, 625, 750]
    assert window_starts(1000, 300)[-1] == 700
    torch.manual_seed(0)
    model = create_model("cnn1d")
    data = _toy(n=8)
    cfg = TrainConfig(crop_s=1.0, target_fs=100, window_aggregate="max")

    scores = predict(model, data, cfg)

    x, d = torch.from_numpy(data.x), torch.from_numpy(data.demo)
    with torch.no_grad():
        manual = torch.stack([torch.sigmoid(model.eval()(x[..., s : s + 100], d)) for s in (0, 50, 100)]).amax(0)
    np.testing.assert_allclose(scores, manual.numpy(), rtol=1e-5)
    whole = predict(model, data, cfg.model_copy(update={"window_aggregate": "whole"}))  # one pass over 2 s
    with torch.no_grad():
        np.testing.assert_allclose(whole, torch.sigmoid(model(x, d)).numpy(), rtol=1e-5)
    assert not np.allclose(whole, scores)


def test_early_stopping_and_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from common.training.engine import load_checkpoint

    torch.manual_seed(0)
    model = create_model("cnn1d")
    cfg = TrainConfig(batch_size=16, lr=3e-3, num_threads=1)

    result = fit(model, _toy(), _toy(seed=2), cfg, epochs=30, patience=2, checkpoint=tmp_path / "best.pt")

    assert result.stopped_early and len(result.history) < 30
    assert len(result.history) - result.best_epoch == 2
    state = load_checkpoint(tmp_path / "best.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    assert '"epoch"' in (tmp_path / "best.json").read_text()


def test_cosine_factor_is_torchs_cosine_annealing() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    expected = []
    for _ in range(7):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    assert [cosine_factor(e, 7) for e in range(7)] == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ auxiliary targets

AUX = ("superclass_NORM", "superclass_CD")


def _toy_with_aux(n: int = 64) -> EcgArrays:
    """The toy task with two auxiliary columns: NORM (the negatives) and CD (a 0.5 mV offset on lead I)."""
    data = _toy(n)
    x = data.x.copy()
    cd = (np.arange(n) % 3 == 0).astype(int)
    x[cd == 1, 0] += 0.5
    meta = data.meta.assign(site="site_a", superclass_NORM=(data.y == 0).astype(int), superclass_CD=cd)
    return EcgArrays(x, data.demo, data.y, meta)


def test_auxiliary_targets_read_0_1_and_empty_cells_as_unknown() -> None:
    meta = pd.DataFrame({"site": "a", "t": [1, 0, np.nan, 1], "s": ["1", "", "0", " "]})

    got = auxiliary_matrix(meta, ("t", "s"))

    np.testing.assert_array_equal(got[:, 0], [1, 0, np.nan, 1])
    np.testing.assert_array_equal(got[:, 1], [1, np.nan, 0, np.nan])
    assert got.dtype == np.float32


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (["1", "0", "yes"], r"'t' of site_a must be 0, 1 or empty; 1 records hold other values, e.g. 'yes'"),
        ([0, 2, 1], r"'t' of site_a must be 0, 1 or empty; 1 records hold other values, e.g. '2'"),
    ],
)
def test_auxiliary_targets_other_than_0_1_are_refused(column: list[object], message: str) -> None:
    meta = pd.DataFrame({"site": "site_a", "t": column})

    with pytest.raises(AuxiliaryTargetError, match=message):
        auxiliary_matrix(meta, ("t",))


def test_a_missing_auxiliary_column_names_the_column_and_the_hospitals() -> None:
    data = _toy_with_aux()
    cfg = CFG.model_copy(update={"model": "cnn1d", "auxiliary_targets": ("superclass_HYP",)})

    with pytest.raises(AuxiliaryTargetError, match=r"\['superclass_HYP'\] are not columns of the metadata of site_a"):
        train_epochs(build_model(cfg), data, cfg, epochs=1, seed=0)


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_an_auxiliary_head_that_scoring_never_reads(name: str) -> None:
    # Prepare: the same weights with and without the auxiliary head
    cfg = CFG.model_copy(update={"model": name, "auxiliary_targets": AUX})
    torch.manual_seed(0)
    plain = create_model(name).eval()
    with_aux = build_model(cfg).eval()
    with_aux.load_state_dict({**with_aux.state_dict(), **plain.state_dict()})
    x, demo = torch.randn(3, 12, 250), torch.randn(3, 5)

    # Execute
    with torch.no_grad():
        logit, aux = with_aux.forward_with_auxiliary(x, demo)  # type: ignore[operator]
        expected = plain(x, demo)

    # Assert: the AMI logit is the plain network's; the head adds keys that scoring_state removes
    assert aux.shape == (3, len(AUX))
    torch.testing.assert_close(logit, expected)
    torch.testing.assert_close(with_aux(x, demo), expected)
    extra = set(with_aux.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("aux_head.") for k in extra)
    plain.load_state_dict(scoring_state(with_aux.state_dict()))  # strict: exactly the scoring network's keys


def test_auxiliary_targets_train_their_head_and_change_the_encoder() -> None:
    data = _toy_with_aux()
    cfg = CFG.model_copy(update={"model": "cnn1d", "auxiliary_targets": AUX})
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    train_epochs(model, data, cfg, epochs=6, seed=0)

    aux_model = cast(EcgClassifier, model).eval()
    with torch.no_grad():
        _, aux_logits = aux_model.forward_with_auxiliary(torch.from_numpy(data.x), torch.from_numpy(data.demo))
    cd = data.meta["superclass_CD"].to_numpy() == 1
    assert not torch.equal(before["aux_head.weight"], model.state_dict()["aux_head.weight"])
    assert aux_logits[cd, 1].min() > aux_logits[~cd, 1].max()  # the CD head separates the lead-I offset


def test_unknown_auxiliary_targets_contribute_nothing_to_the_network() -> None:
    # Prepare: every auxiliary target unknown (NaN), so only the AMI loss trains the network
    data = _toy_with_aux()
    unknown = EcgArrays(data.x, data.demo, data.y, data.meta.assign(superclass_NORM="", superclass_CD=np.nan))
    cfg_aux = CFG.model_copy(update={"model": "cnn1d", "auxiliary_targets": AUX})
    cfg_plain = CFG.model_copy(update={"model": "cnn1d"})
    torch.manual_seed(0)
    plain = create_model("cnn1d")
    with_aux = build_model(cfg_aux)
    with_aux.load_state_dict({**with_aux.state_dict(), **plain.state_dict()})

    # Execute: the same seeds for both
    for model, data_, cfg in ((plain, data, cfg_plain), (with_aux, unknown, cfg_aux)):
        torch.manual_seed(1)
        train_epochs(model, data_, cfg, epochs=1, seed=3)

    # Assert
    got = scoring_state(with_aux.state_dict())
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(got[k], v, msg=k)


def test_auxiliary_targets_need_a_model_with_ecg_features() -> None:
    from torch import nn

    class Bare(nn.Module):
        def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
            return x.mean((1, 2))

    with pytest.raises(AuxiliaryTargetError, match="no ECG feature vector"):
        train_epochs(Bare(), _toy_with_aux(), CFG.model_copy(update={"auxiliary_targets": AUX}), epochs=1, seed=0)
