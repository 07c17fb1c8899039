import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from img2latex_lib.plots import (
    abbreviate,
    attention_path,
    attention_peaks,
    block_diagram,
    feature_maps,
    show_attention,
    show_images,
    side_by_side,
    training_curves,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _images(n: int) -> list:
    """PIL images and [H, W, 1] float arrays, as the notebooks pass them."""
    return [Image.new("L", (60, 20), 255) if k % 2 else np.ones((48, 64, 1), "float32")
            for k in range(n)]


def test_show_images_one_axes_per_image_and_titles():
    fig = show_images(_images(5), titles=list("abcde"), ncols=2)
    assert len(fig.axes) == 5  # the sixth cell of the 3x2 grid is removed
    assert [ax.get_title(loc="left") for ax in fig.axes] == list("abcde")
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        show_images(_images(3), titles=["a", "b"])


def test_show_images_keeps_grey_levels():
    dark = np.zeros((10, 10), np.uint8)
    fig = show_images([dark])
    assert fig.axes[0].images[0].get_clim() == (0, 255)  # black stays black, not rescaled


def test_titles_with_dollar_signs_draw_as_text():
    fig = show_images(_images(1), titles=[r"\$ 5 + $\frac { a } {$"])  # not valid mathtext
    fig.canvas.draw()  # would raise a mathtext parse error if "$" started math mode


def test_side_by_side_two_columns():
    fig = side_by_side(_images(3), _images(3), titles=("real", "render"))
    assert len(fig.axes) == 6
    assert [ax.get_title(loc="left") for ax in fig.axes[:2]] == ["real", "render"]
    with pytest.raises(ValueError, match="pairs: got 2 and 3"):
        side_by_side(_images(2), _images(3))


def test_feature_maps_grid():
    maps = [np.random.default_rng(0).random((24, 80, 16)), np.zeros((6, 20, 2))]
    fig = feature_maps(maps, channels=3)
    assert len(fig.axes) == 6
    assert len(fig.axes[5].images) == 0  # the second map has only 2 channels
    assert "6x20" in fig.axes[3].get_ylabel()


def test_show_attention_overlays_each_map():
    fig = show_attention(np.ones((48, 96, 1)), np.random.default_rng(0).random((3, 6, 12)),
                         titles=["a", "b", "c"])
    assert len(fig.axes) == 3
    assert all(len(ax.images) == 2 for ax in fig.axes)
    assert fig.axes[0].images[1].get_clim()[0] == 0.0  # even weights must not look peaked
    with pytest.raises(ValueError, match="maps, rows, cols"):
        show_attention(np.ones((48, 96)), np.ones((6, 12)))


def test_show_images_wraps_long_titles_instead_of_cutting_them():
    formula = " ".join(["x _ { i } +"] * 30)
    fig = show_images(_images(1), titles=[formula], width=6)
    title = fig.axes[0].get_title(loc="left")
    assert title.count("\n") >= 2
    assert title.replace("\n", " ") == formula


def test_attention_peaks_and_path():
    maps = np.full((3, 6, 12), 0.01)
    for step, (row, col) in enumerate([(2, 1), (1, 5), (4, 10)]):
        maps[step, row, col] = 0.5
    x, y = attention_peaks(maps, stride=8)
    assert list(x) == [12, 44, 84] and list(y) == [20, 12, 36]
    fig = attention_path(np.ones((48, 96, 1)), maps, ["a", "$", "c"], stride=8)
    assert [t.get_text() for t in fig.axes[1].texts] == ["a", "\\$", "c"]
    assert fig.axes[1].get_ylim() == (2.5, -0.5)  # step 0 at the top
    with pytest.raises(ValueError, match="3 attention maps but 2 tokens"):
        attention_path(np.ones((48, 96)), maps, ["a", "b"], stride=8)


def test_block_diagram_boxes_and_links():
    fig = block_diagram([["image", "CNN", "rows"], ["tokens", "GRU"]], links=[((0, 2), (1, 1))],
                        lane_titles=["encoder", "decoder"])
    ax = fig.axes[0]
    assert len(ax.patches) == 5 + 3 + 1  # boxes, arrows within lanes, one link
    assert {t.get_text() for t in ax.texts} >= {"image", "GRU", "encoder"}
    with pytest.raises(ValueError, match="at least one box"):
        block_diagram([["a"], []])


def test_training_curves_one_panel_per_logged_metric(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,masked_accuracy,val_bleu,val_loss\n"
                   "0,5.0,0.1,0.0,NA\n1,4.0,0.2,0.1,NA\n"
                   "1,3.5,0.3,0.2,NA\n2,3.0,0.4,0.3,NA\n")  # epoch 1 again after a resume
    fig = training_curves(log, metrics=("loss", "val_bleu", "val_loss", "val_exact"))
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "validation BLEU-4"]
    x, y = fig.axes[0].lines[0].get_data()
    assert list(x) == [1, 2, 3] and list(y) == [5.0, 3.5, 3.0]  # the resumed epoch's last row
    with pytest.raises(ValueError, match="none of val_exact is in the log"):
        training_curves(log, metrics=("val_exact",))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="no epoch logged yet"):
        training_curves(tmp_path / "empty.csv")


def test_abbreviate_keeps_the_first_items_and_counts_all():
    assert abbreviate(["a", "b", "c"], 2) == "a b … (3)"
    assert abbreviate(["a", "b"], 2) == "a b"
    assert abbreviate([]) == ""
    with pytest.raises(ValueError):
        abbreviate(["a"], 0)
