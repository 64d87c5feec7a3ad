"""The paper's early-stopping rule: scripted metric sequences, the Tune stopper, a real Tune run."""
import pytest

from hinas_core.early_stop import EarlyStopRule


def run(psnrs, patience, rule="decrease", warmup=0):
    r = EarlyStopRule(patience=patience, rule=rule)
    for epoch, p in enumerate(psnrs, start=1):
        r.update(epoch, p, counting=epoch > warmup)
        if r.stopped:
            return epoch, r
    return None, r


@pytest.mark.parametrize("psnrs, patience, stop_at, best", [
    ([20, 21, 22, 21.5, 21.0, 20.5], 3, 6, 3),        # three decreases in a row
    ([20, 21, 20.5, 20.8, 20.1, 19.9, 19.0], 3, 7, 2),  # a rise resets the count
    ([20, 21, 22, 23], 1, None, 4),                    # never decreases
    ([20, 19], 1, 2, 1),
    ([20, 20, 20, 20], 1, None, 1),                    # equal is not a decrease
])
def test_decrease_rule_on_scripted_sequences(psnrs, patience, stop_at, best):
    stopped, r = run(psnrs, patience)
    assert stopped == stop_at
    assert r.best_epoch == best


def test_below_best_rule_counts_evaluations_without_a_new_best():
    # 22 is best at epoch 3; 21.9, 21.95, 21.99 are each a rise but never beat it.
    stopped, r = run([20, 21, 22, 21.9, 21.95, 21.99], 3, rule="below_best")
    assert stopped == 6 and r.best_epoch == 3
    stopped, _ = run([20, 21, 22, 21.9, 21.95, 21.99], 3, rule="decrease")
    assert stopped is None


def test_counting_and_best_start_with_architecture_updates():
    # Epochs 1-3 are warm-up: their (higher) PSNR neither counts nor becomes the best.
    stopped, r = run([30, 29, 28, 20, 21, 20.5, 20.4], patience=2, warmup=3)
    assert stopped == 7 and r.best_epoch == 5
    assert r.best_psnr == 21


def test_state_round_trips_and_continues_the_same_count():
    _, r = run([20, 21, 20.5], patience=3)
    restored = EarlyStopRule.from_state(r.state_dict())
    for epoch, p in [(4, 20.4), (5, 20.3)]:
        r.update(epoch, p)
        restored.update(epoch, p)
    assert restored.state_dict() == r.state_dict() and r.stopped


def test_bad_patience_and_rule_are_rejected():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopRule(patience=0)
    with pytest.raises(ValueError, match="rule"):
        EarlyStopRule(rule="plateau")


def test_stopper_decides_from_the_reported_counters():
    from hinas.pipeline.stopping import PSNRDecreaseStopper

    s = PSNRDecreaseStopper(max_epochs=10)
    assert not s("t", {"epoch": 3, "es_count": 1, "es_patience": 2})
    assert s("t", {"epoch": 4, "es_count": 2, "es_patience": 2})
    assert s("t", {"epoch": 10, "es_count": 0, "es_patience": 2})
    assert PSNRDecreaseStopper.reason({"epoch": 4, "es_count": 2, "es_patience": 2}, 10) == "early-stop"
    assert PSNRDecreaseStopper.reason({"epoch": 10, "es_count": 0, "es_patience": 2}, 10) == "epoch-cap"
    assert not s.stop_all()


def scripted_trainable(config):
    """Reports a scripted PSNR sequence through the real rule and never stops by itself."""
    import json
    import tempfile
    from pathlib import Path

    from ray import tune

    rule, start = EarlyStopRule(patience=config["patience"]), 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = json.loads(Path(d, "state.json").read_text())
        rule, start = EarlyStopRule.from_state(state["rule"]), state["epoch"]
    seq = config["psnrs"]
    for epoch in range(start + 1, 1000):
        rule.update(epoch, seq[min(epoch, len(seq)) - 1])
        with tempfile.TemporaryDirectory() as d:
            Path(d, "state.json").write_text(json.dumps({"rule": rule.state_dict(), "epoch": epoch}))
            tune.report({"epoch": epoch, **rule.metrics()}, checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.slow
def test_stopper_fires_in_a_real_tune_run(tmp_path, ray_local):
    from ray import tune

    from hinas.pipeline.stopping import PSNRDecreaseStopper

    tuner = tune.Tuner(
        tune.with_resources(scripted_trainable, {"cpu": 0.5}),
        param_space={"patience": tune.grid_search([2, 3]),
                     "psnrs": [20, 21, 22, 21.5, 21.4, 21.3, 22.5, 22.0, 21.0, 20.0, 19.0]},
        run_config=tune.RunConfig(name="scripted", storage_path=str(tmp_path),
                                  stop=PSNRDecreaseStopper(max_epochs=50), verbose=0),
    )
    results = tuner.fit()
    stopped = {r.config["patience"]: r.metrics["epoch"] for r in results}
    # patience 2: decreases at epochs 4, 5 -> stop at 5. patience 3: 4, 5, 6 -> stop at 6.
    assert stopped == {2: 5, 3: 6}
    assert all(not r.error for r in results)
