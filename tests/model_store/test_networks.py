"""Generators: shapes, ranges, conditioning, truncation; and to_uint8."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from model_store import build_generator, to_uint8
from model_store.networks import make_config
from model_store.networks.base import class_stem_sums

SMALL = {
    "mlp": {"hidden": (32, 32), "resolution": 8, "channels": 1},
    "dcgan": {"ngf": 8, "resolution": 16},
    "resnet": {"ch": 4, "resolution": 16, "multipliers": (4, 2, 1)},
}


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_output_shape_and_range(arch: str) -> None:
    torch.manual_seed(0)
    g = build_generator(arch, {**SMALL[arch], "num_classes": 3, "z_dim": 8}).eval()
    c, r = g.config.channels, g.config.resolution
    x = g(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, c, r, r)
    assert x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_conditional_output_depends_on_the_class(arch: str) -> None:
    torch.manual_seed(0)
    g = build_generator(arch, {**SMALL[arch], "num_classes": 3, "z_dim": 8}).eval()
    for p in g.parameters():  # move conditional BN gains off their neutral start
        p.data.add_(torch.randn_like(p) * 0.1)
    z = torch.randn(1, 8).repeat(3, 1)
    x = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(x[0], x[1]) and not torch.allclose(x[1], x[2])


def test_eval_mode_rows_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    g = build_generator("dcgan", SMALL["dcgan"]).eval()
    z = torch.randn(8, g.z_dim)
    alone = torch.cat([g(z[i : i + 1]) for i in range(8)])
    assert torch.allclose(alone, g(z), atol=1e-5)


def test_z_scale_truncation_scales_z() -> None:
    torch.manual_seed(0)
    g = build_generator("dcgan", SMALL["dcgan"]).eval()
    g.truncation_mode = "z_scale"
    z = torch.randn(2, g.z_dim)
    psi = torch.tensor([0.5, 1.0])
    assert torch.allclose(g(z, psi=psi), g(z * psi[:, None]))


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_feature_truncation_pulls_towards_the_class_average(arch: str) -> None:
    torch.manual_seed(0)
    g = build_generator(arch, {**SMALL[arch], "num_classes": 3, "z_dim": 8}).eval()
    assert g.truncation_mode == "feature_avg"
    for p in g.parameters():  # move conditional BN gains off their neutral start
        p.data.add_(torch.randn_like(p) * 0.1)
    z, labels = torch.randn(6, 8), torch.tensor([0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        plain = g(z, labels)
        # psi = 1 is exactly no truncation (lerp returns the end point).
        assert torch.equal(g(z, labels, torch.ones(6)), plain)
        # psi = 0: every latent of a class paints that class's one average image.
        average = g(z, labels, torch.zeros(6))
        assert torch.allclose(average[0], average[1], atol=1e-6)
        assert torch.allclose(average[0], average[2], atol=1e-6)
        assert not torch.allclose(average[0], average[3], atol=1e-3)
        # In between: closer to the average than the untruncated image is.
        half = g(z, labels, torch.full((6,), 0.5))
        assert ((half - average).abs().mean() < (plain - average).abs().mean()).item()
        # The stem means come from a fixed draw: a second fit changes nothing.
        means = g.stem_means.clone()
        g.fit_stem_means()
        assert torch.equal(g.stem_means, means)


def test_dcgan_shares_its_stem_across_classes_with_the_same_result() -> None:
    torch.manual_seed(0)
    config = {**SMALL["dcgan"], "num_classes": 3, "z_dim": 8, "conditioning": "cbn"}
    g = build_generator("dcgan", config).eval()
    for p in g.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    z = torch.randn(32, 8)
    with torch.no_grad():
        assert torch.allclose(g.class_stem_sums(z), class_stem_sums(g, z), atol=1e-4)


def test_bad_inputs_and_configs_are_refused() -> None:
    g = build_generator("dcgan", {**SMALL["dcgan"], "num_classes": 2})
    with pytest.raises(ValueError, match="shape"):
        g(torch.randn(2, 3))
    with pytest.raises(ValueError, match="labels are required"):
        g(torch.randn(2, g.z_dim))
    with pytest.raises(ValueError, match="power of two"):
        build_generator("dcgan", {"resolution": 48})
    with pytest.raises(ValueError, match="no field"):
        make_config("dcgan", {"ngf_typo": 3})


def test_to_uint8_unpremultiplies_alpha() -> None:
    # Premultiplied half-transparent red: (0.5, 0, 0, 0.5) -> straight (255, 0, 0, 128).
    x = torch.tensor([0.5, 0.0, 0.0, 0.5]).view(1, 4, 1, 1) * 2 - 1
    out = to_uint8(x, "premultiplied")
    assert out.shape == (1, 1, 1, 4)
    assert out[0, 0, 0].tolist() == [255, 0, 0, 128]
    clear = to_uint8(torch.full((1, 4, 2, 2), -1.0), "premultiplied")
    assert clear.sum() == 0
    assert to_uint8(torch.zeros(2, 4, 8, 8), "premultiplied", size=32).shape == (2, 32, 32, 4)


def test_model_store_imports_neither_training_nor_app() -> None:
    code = (
        "import sys, model_store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'app')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
