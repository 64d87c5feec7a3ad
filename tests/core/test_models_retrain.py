import io

import numpy as np
import pytest
import torch

from hinas_core import Genotype, count_parameters
from hinas_core.dncnn import DnCNN
from hinas_core.models import ModelError, build_model, calibrate_width, hinas_spec, load_model, save_model
from hinas_core.retrain import RetrainConfig, Trainer


class ToySampler:
    """Real image content (scikit-image's camera) with Gaussian noise, 24x24 crops."""

    def __init__(self, sigma=30):
        from skimage import data
        self.img = data.camera().astype(np.float32) / 255
        self.sigma = sigma / 255

    def sample(self, rng, batch):
        ys, xs = rng.integers(0, 488, batch), rng.integers(0, 488, batch)
        clean = np.stack([self.img[y:y + 24, x:x + 24] for y, x in zip(ys, xs)])[:, None]
        noisy = clean + self.sigma * rng.standard_normal(clean.shape).astype(np.float32)
        return torch.from_numpy(noisy), torch.from_numpy(clean)


def test_dncnn_has_the_paper_comparable_size_and_keeps_shape():
    net = DnCNN()
    assert 0.55e6 < count_parameters(net) < 0.57e6
    x = torch.rand(2, 1, 20, 20)
    assert net(x).shape == x.shape


def test_width_calibration_hits_the_target_closest():
    g = Genotype.load("example_denoise")
    w = calibrate_width(g, 630_000)
    spec = hinas_spec(g, target_params=630_000)
    n = count_parameters(build_model(spec))
    assert spec["width"] == w
    for other in (w - 1, w + 1):
        m = count_parameters(build_model({**spec, "width": other}))
        assert abs(n - 630_000) <= abs(m - 630_000)


@pytest.mark.parametrize("spec", [hinas_spec(Genotype.load("example_denoise"), width=4), {"kind": "dncnn", "depth": 4, "width": 8}])
def test_model_files_rebuild_alone(tmp_path, spec):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    path = save_model(tmp_path / "m.pt", spec, model, {"sigma": 30})
    loaded, spec2, meta = load_model(path)
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))
    assert spec2 == spec and meta == {"sigma": 30}


def test_bad_specs_and_files_are_refused(tmp_path):
    with pytest.raises(ModelError, match="unknown kind"):
        build_model({"kind": "unet"})
    with pytest.raises(ModelError, match="unknown key"):
        build_model({"kind": "dncnn", "dept": 3})
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelError, match="cannot be read"):
        load_model(tmp_path / "text.pt")
    # A model file for a different architecture than its weights.
    spec = {"kind": "dncnn", "depth": 4, "width": 8}
    path = save_model(tmp_path / "m.pt", spec, build_model({"kind": "dncnn", "depth": 5, "width": 8}))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(path)


def test_a_pickle_with_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    torch.save({"format": 1, "spec": "{}", "state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_retraining_lowers_the_loss_and_resumes_exactly():
    cfg = RetrainConfig(iterations=30, batch_size=4, report_every=10, lr=2e-3)
    spec = {"kind": "dncnn", "depth": 4, "width": 8}
    a = Trainer(spec, cfg, ToySampler())
    first = a.run()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    while not a.done:
        last = a.run()
    assert last["iteration"] == 30 and last["train_loss"] < first["train_loss"]
    b = Trainer(spec, cfg, ToySampler())
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    while not b.done:
        b.run()
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_learning_rate_schedules():
    spec = {"kind": "dncnn", "depth": 3, "width": 4}
    for schedule in ("poly", "cosine"):
        t = Trainer(spec, RetrainConfig(iterations=100, lr=1e-3, lr_min=1e-5, schedule=schedule), ToySampler())
        assert t.lr_at(0) == pytest.approx(1e-3) and t.lr_at(100) == pytest.approx(1e-5)
        assert t.lr_at(30) > t.lr_at(60)
    with pytest.raises(ValueError, match="retrain.optimizer"):
        RetrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="unknown key"):
        RetrainConfig.from_dict({"iters": 3})


@pytest.mark.parametrize("kind", ["hinas", "dncnn"])
def test_folding_batchnorm_keeps_the_function_and_removes_every_bn(kind):
    from torch import nn

    from hinas_core.genotype import Genotype
    from hinas_core.inference import fold_batchnorm
    from hinas_core.models import build_model, hinas_spec

    torch.manual_seed(0)
    spec = hinas_spec(Genotype.load("example_denoise"), width=4) if kind == "hinas" else \
        {"kind": "dncnn", "depth": 4, "width": 8, "in_channels": 1}
    model = build_model(spec)
    model.train()
    with torch.no_grad():  # move the running statistics away from their initial 0/1
        for _ in range(3):
            model(torch.rand(4, 1, 24, 24) * 2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.uniform_(m.weight, 0.5, 1.5), nn.init.uniform_(m.bias, -0.2, 0.2)
    model.eval()
    x = torch.rand(2, 1, 40, 32)
    with torch.no_grad():
        ref = model(x)
        fold_batchnorm(model)
        out = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
