"""The figure writer: both formats, atomically, the same bytes for the same figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.plots import save  # noqa: E402


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
