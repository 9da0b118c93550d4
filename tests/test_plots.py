"""The figure writer: both formats, atomically, the same bytes for the same figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.results.plots import save  # noqa: E402


def figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_a_figure_saved_twice_is_the_same_bytes_and_its_pdf_carries_no_date(tmp_path):
    save(figure(), tmp_path / "a" / "fig")
    first = {ext: (tmp_path / "a" / f"fig.{ext}").read_bytes() for ext in ("png", "pdf")}
    assert b"/CreationDate" not in first["pdf"]   # a date would change the file at every redraw
    save(figure(), tmp_path / "a" / "fig")
    assert {ext: (tmp_path / "a" / f"fig.{ext}").read_bytes() for ext in ("png", "pdf")} == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["fig.pdf", "fig.png"]


def test_a_figure_is_redrawn_only_when_its_data_code_or_files_changed(tmp_path):
    """The report's ladder and forest figures are kept when drawn from the same claims by the
    same code (drawn_from), and drawn again when any of the three changed."""
    from common.results.plots import drawn_from, figure_key
    stem = tmp_path / "fig"
    key = figure_key({"d": [1.0, 2.0]})
    assert not drawn_from(stem, key)                        # nothing drawn yet
    save(figure(), stem)
    assert not drawn_from(stem, key)                        # saved without a key: no record
    save(figure(), stem, key)
    assert drawn_from(stem, key)
    assert not drawn_from(stem, figure_key({"d": [1.0, 2.5]}))     # other data
    assert not drawn_from(stem, figure_key({"d": [1.0, 2.0]}, __file__))   # other code
    (tmp_path / "fig.png").write_bytes(b"edited")
    assert not drawn_from(stem, key)                        # the file changed since
    save(figure(), stem, key)
    (tmp_path / "fig.pdf").unlink()
    assert not drawn_from(stem, key)                        # a file missing


def test_the_ladder_figure_is_kept_for_the_same_claims_and_redrawn_for_new_ones(tmp_path):
    from common.reporting import ladder
    row = {"study": "exp52 §5.2", "claim": "c", "column": "MNIST", "epochs": 2,
           "difference": 1.0, "sem": 0.1, "certified": True, "paper": None}
    (png,) = ladder.plot([row], tmp_path)
    stamp, first = png.stat().st_mtime_ns, png.read_bytes()
    ladder.plot([row], tmp_path)
    assert png.stat().st_mtime_ns == stamp                  # not written again
    ladder.plot([row, {**row, "epochs": 4, "difference": 2.0}], tmp_path)
    assert png.read_bytes() != first                        # drawn again, with the new length
