"""DiffAugment with its random numbers passed in: each transform does what it says."""

from __future__ import annotations

import pytest
import torch

from training.augment import diff_augment, num_params, parse_policy


def test_policies_read_their_own_columns_and_unknown_names_are_refused() -> None:
    assert num_params("color,translation,cutout") == 7 and num_params("") == 0
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        parse_policy("color,blur")


def test_translation_shifts_by_the_drawn_amount_and_fills_with_zeros() -> None:
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8)
    # u in [0, 1) maps to offsets in [-1, 1] pixels for 8 px at ratio 0.125: 0.9 -> +1,
    # so row i shows row i + 1 and the last row is the zero border.
    shifted = diff_augment(x, "translation", torch.tensor([[0.9, 0.5]]))
    assert torch.equal(shifted[0, 0, :-1], x[0, 0, 1:]) and shifted[0, 0, -1].eq(0).all()
    same = diff_augment(x, "translation", torch.tensor([[0.5, 0.5]]))
    assert torch.equal(same, x)


def test_cutout_zeros_one_square_of_half_the_size() -> None:
    x = torch.ones(2, 3, 8, 8)
    out = diff_augment(x, "cutout", torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert (out[0] == 0).sum() == 3 * 4 * 4  # a 4x4 hole in every channel
    assert (out[1] == 0).sum() == 3 * 2 * 2  # centred on the corner: a quarter of it shows


def test_colour_changes_rgb_and_keeps_alpha() -> None:
    x = torch.rand(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    u = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    out = diff_augment(x, "color", u)
    assert torch.equal(out[:, 3], x[:, 3]) and not torch.equal(out[:, :3], x[:, :3])
    neutral = torch.tensor([[0.5, 0.5, 0.5]]).expand(4, 3)  # +0 brightness, x1, x1
    assert torch.allclose(diff_augment(x, "color", neutral), x, atol=1e-6)


def test_each_image_gets_its_own_draw() -> None:
    x = torch.ones(2, 1, 8, 8)
    u = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.99, 0.99]])
    out = diff_augment(x, "translation,cutout", u)
    assert not torch.equal(out[0], out[1])
