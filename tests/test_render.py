"""The shareable formats: Markdown (job summary), JUnit XML (CI), self-contained HTML."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import diagnose_fixture, fixture_path, run_cli

from kerasdoctor.checks import registry
from kerasdoctor.findings import CheckError, Finding, Fix, Kind, Report, Severity
from kerasdoctor.metrics import compute_metrics
from kerasdoctor.render import render
from kerasdoctor.render.html import render_html
from kerasdoctor.render.junit import render_junit
from kerasdoctor.render.markdown import code, esc, render_markdown
from kerasdoctor.sections import DataSection, MaskClass, MasksInfo, ModelSection

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def collapsed() -> Report:
    return diagnose_fixture("collapsed.keras", "collapsed.npz")


def healthy() -> Report:
    return diagnose_fixture("healthy.keras", "healthy.npz")


def synthetic(
    k: int = 3,
    findings: tuple[Finding, ...] = (),
    errors: tuple[CheckError, ...] = (),
    ignored: dict[str, str] | None = None,
    names: list[str] | None = None,
    seed: int = 0,
) -> Report:
    """A report built from a confusion matrix through the real metrics code (renderer tests)."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 5, size=(k, k)) + np.diag(rng.integers(5, 60, size=k))
    conf[:, 1] = 0  # class 1 is never predicted
    names = names or [f"c{i}" for i in range(k)]
    return Report(
        model=ModelSection(
            path="m.keras",
            format="keras",
            inputs=(),
            output="out",
            n_outputs=k,
            head="softmax",
            loss="categorical_crossentropy",
            loss_from_logits=False,
            optimizer_iterations=100,
        ),
        data=DataSection(
            path="d.npz",
            n_samples=int(conf.sum()),
            n_classes=k,
            class_names=tuple(names),
            label_counts=tuple(int(v) for v in conf.sum(axis=1)),
            label_encoding="index",
            inputs=(),
        ),
        metrics=compute_metrics(conf, names),
        findings=findings,
        errors=errors,
        ignored=ignored or {},
        version="test",
    )


NASTY = Finding(
    "prediction-collapse",
    Kind.SYMPTOM,
    Severity.ERROR,
    "class <script>alert(1)</script> | *bold* & `tick` \x01 done",
    "a detail with <b>html</b> & | pipes",
    {"share": 0.97, "name": "a<b", "rows": [{"class": 1, "name": "x|y"}]},
    (Fix("weights & more", command="kerasdoctor fix --class-weights 'my `data`.npz'"),),
)


# ------------------------------------------------------------------ markdown


def test_markdown_names_every_finding_id_and_the_missing_class() -> None:
    r = collapsed()
    md = render_markdown(r)
    assert r.findings, "the collapsed fixture must have findings"
    for f in r.findings:
        assert code(f.id) in md, f.id
    assert "SICK" in md
    missing = [c for c in r.metrics.per_class if c.missing]
    assert missing
    for c in missing:
        row = next(ln for ln in md.splitlines() if ln.startswith(f"| {c.index} | "))
        assert "never predicted" in row
    # the full evidence behind each finding is valid JSON
    blocks = re.findall(r"```json\n(.*?)\n```", md, re.S)
    assert blocks and all(isinstance(json.loads(b), dict) for b in blocks)
    # fix commands are in code spans, copy-pasteable as they are
    for f in r.findings:
        for fx in f.fixes:
            if fx.command:
                assert code(fx.command) in md


def test_markdown_of_a_healthy_model_is_short_and_has_no_findings_section() -> None:
    md = render_markdown(healthy())
    assert "HEALTHY" in md and "### Findings" not in md
    assert "No findings" in md
    assert len(md.splitlines()) < 40


@pytest.mark.unit
def test_markdown_root_cause_and_chain_come_first() -> None:
    cause = Finding(
        "class-imbalance",
        Kind.CAUSE,
        Severity.ERROR,
        "labels are 80/12/8",
        "the rare classes are the dropped ones",
        {"ratio": 13.3},
        (Fix("weights", command="kerasdoctor fix --class-weights d.npz"),),
    )
    r = replace(
        synthetic(), findings=(NASTY, cause), chain=("class-imbalance", "prediction-collapse")
    )
    md = render_markdown(r)
    head = md.split("### Per class")[0]
    assert "Most likely cause: `class-imbalance`" in head
    assert "`ratio=13.3`" in head and "`kerasdoctor fix --class-weights d.npz`" in head
    assert "**Chain:** `class-imbalance` → `prediction-collapse`" in head


@pytest.mark.unit
def test_markdown_escapes_what_would_break_it() -> None:
    md = render_markdown(synthetic(findings=(NASTY,)))
    assert "<script>" not in md and "<b>html</b>" not in md
    title_row = next(ln for ln in md.splitlines() if "`prediction-collapse` | symptom" in ln)
    # a table row keeps its 4 cells: the title's pipe is escaped
    assert len(re.findall(r"(?<!\\)\|", title_row)) == 5
    assert esc("a|b*c_d<e") == "a\\|b\\*c\\_d\\<e"
    # a command with backticks stays one code span
    assert code("x `y` z") == "``x `y` z``"
    assert code("`y`") == "`` `y` ``"  # CommonMark strips one space each side


@pytest.mark.unit
def test_markdown_caps_the_class_table_but_keeps_the_worst_classes() -> None:
    r = synthetic(k=80)
    md = render_markdown(r)
    rows = [ln for ln in md.splitlines() if re.match(r"^\| \d+ \| c\d+ \|", ln)]
    assert len(rows) == 30
    assert any(ln.startswith("| 1 | c1 |") and "never predicted" in ln for ln in rows)
    assert "weakest of 80 classes" in md
    assert "Confusion matrix" not in md  # 80 x 80 does not belong in a PR comment


# ------------------------------------------------------------------ junit


def _junit(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def test_junit_sick_model_has_failures_carrying_id_title_and_evidence() -> None:
    res = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "junit",
    )
    assert res.exit_code == 1, res.stderr
    root = _junit(res.stdout)
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [c.spec.id for c in registry()]
    # no gate was set: the gate did not run, and says so instead of passing
    gate = root.find(".//testcase[@name='quality-gate']/skipped")
    assert gate is not None and "no gate set" in gate.get("message", "")
    failures = root.findall(".//testcase/failure")
    assert failures
    report = collapsed()
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    loud = [f for f in report.findings if f.severity is not Severity.INFO]
    assert len(failures) == len({f.id for f in loud})
    assert {f.get("type") for f in failures} == {f.severity.value for f in loud}
    for f in errors:
        fail = root.find(f".//testcase[@name='{f.id}']/failure")
        assert fail is not None
        assert f.id in fail.get("message", "") and f.title in fail.get("message", "")
        assert "evidence: {" in (fail.text or "")
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == str(len(failures))
    assert suite.get("tests") == str(len(cases))


def test_junit_is_the_same_whatever_fail_on_says() -> None:
    """--fail-on decides the exit code only: a sick model's JUnit shows its failures even with
    --fail-on never, and a warning is a failure of type 'warning'."""
    r = collapsed()
    warnings = [f for f in r.findings if f.severity is Severity.WARNING]
    assert warnings, "expected a warning on the collapsed fixture (low-recall)"
    strip = lambda x: x.replace('value="never"', "").replace('value="error"', "")  # noqa: E731
    at_error = render_junit(r, fail_on="error")
    never = render_junit(r, fail_on="never")
    assert strip(at_error) == strip(never)
    root = _junit(never)
    assert root.findall(".//failure")
    for f in warnings:
        fail = root.find(f".//testcase[@name='{f.id}']/failure")
        assert fail is not None and fail.get("type") == "warning"
    res = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "junit",
        "--fail-on",
        "never",
    )
    assert res.exit_code == 0 and _junit(res.stdout).findall(".//failure")


def test_junit_healthy_model_passes_at_fail_on_warning() -> None:
    res = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        fixture_path("healthy.npz"),
        "--format",
        "junit",
        "--fail-on",
        "warning",
    )
    assert res.exit_code == 0, res.stderr
    root = _junit(res.stdout)
    assert not root.findall(".//failure") and not root.findall(".//error")
    assert len(root.findall(".//testcase")) == len(registry())
    # checks that do not apply to this model are skipped with the reason, never "passed"
    skipped = {
        c.get("name"): c.find("skipped")
        for c in root.findall(".//testcase")
        if c.find("skipped") is not None
    }
    assert "batchnorm-statistics" in skipped and "decision-threshold" in skipped
    assert "no BatchNormalization layer" in (skipped["batchnorm-statistics"].get("message") or "")


@pytest.mark.unit
def test_junit_crashes_are_errors_ignored_are_skipped_and_text_is_escaped() -> None:
    r = synthetic(
        findings=(NASTY,),
        errors=(CheckError("low-recall", "ZeroDivisionError: <boom> & \x00"),),
        ignored={"constant-output": "the model is a <lookup> & fine"},
    )
    root = _junit(render_junit(r))
    err = root.find(".//testcase[@name='low-recall']/error")
    assert err is not None and "<boom>" in err.get("message", "")
    skip = root.find(".//testcase[@name='constant-output']/skipped")
    assert skip is not None and "the model is a <lookup> & fine" in skip.get("message", "")
    fail = root.find(".//testcase[@name='prediction-collapse']/failure")
    assert fail is not None and "<script>" in fail.get("message", "")
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("errors"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "1")


@pytest.mark.unit
def test_junit_lists_findings_from_outside_the_registry() -> None:
    extra = Finding("custom-gate", Kind.SYMPTOM, Severity.ERROR, "too slow", "p99 800 ms")
    root = _junit(render_junit(synthetic(findings=(extra,))))
    assert root.find(".//testcase[@name='custom-gate']/failure") is not None


# ------------------------------------------------------------------ html


class _Page(HTMLParser):
    """Collects images, links and checks that every opened element is closed in order."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.figures: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if tag == "img":
            self.images.append(a)
        if tag == "figure":
            self.figures.append(str(a.get("data-plot")))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert not page.problems, page.problems[:5]
    assert not page.stack, f"unclosed: {page.stack}"
    return page


def _assert_self_contained_with_plots(html: str, inputs: list[str]) -> _Page:
    page = _parse(html)
    expected = ["confusion", "recall-support", "distribution"] + [f"input:{n}" for n in inputs]
    assert page.figures == expected
    assert len(page.images) == len(expected)
    for img in page.images:
        src = str(img.get("src"))
        assert src.startswith("data:image/png;base64,"), src[:40]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC) and len(png) > 2000
        assert img.get("alt")
    # nothing fetched from anywhere: every src/href is inline or an in-page anchor
    assert all(u.startswith(("data:", "#")) for u in page.urls), page.urls
    assert not re.search(r"https?://|@import|url\(", html)
    assert "script" not in page.tags and "link" not in page.tags
    return page


def test_html_is_one_self_contained_file_with_every_plot(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "html",
        "--output",
        str(out),
    )
    assert res.exit_code == 1, res.stderr
    assert res.stdout == ""
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    r = collapsed()
    _assert_self_contained_with_plots(html, [i.name for i in r.data.inputs])
    assert "SICK" in html
    for f in r.findings:
        assert f'id="finding-{f.id}"' in html
        for fx in f.fixes:
            if fx.command:
                assert f"$ {fx.command}" in html
    assert "(never)" in html  # the never-predicted class is marked in the table


def test_html_multi_input_plots_one_histogram_per_input() -> None:
    r = diagnose_fixture("multi_input.keras", "multi_input.npz")
    names = [i.name for i in r.data.inputs]
    assert len(names) == 2
    _assert_self_contained_with_plots(render_html(r), names)
    for info in r.data.inputs:  # the histogram covers the input's whole range
        hist = info.histogram
        assert hist is not None
        assert hist.lo == info.min and hist.hi == info.max
        assert sum(hist.counts) > 0


def test_html_fragment_for_jupyter() -> None:
    r = healthy()
    frag = render_html(r, standalone=False)
    assert frag.startswith('<div class="kd">') and "<html" not in frag and "<body" not in frag
    _assert_self_contained_with_plots(frag, [i.name for i in r.data.inputs])
    assert r._repr_html_() == frag


@pytest.mark.unit
def test_html_escapes_text_and_shows_errors_and_ignored() -> None:
    r = synthetic(
        findings=(NASTY,),
        errors=(CheckError("low-recall", "boom <x>"),),
        ignored={"constant-output": "fine <really>"},
        names=["<img src=x>", "b", "c"],
    )
    html = render_html(r)
    page = _parse(html)
    assert "<script>" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in html and "fine &lt;really&gt;" in html
    assert "boom &lt;x&gt;" in html
    assert page.figures == ["confusion", "recall-support", "distribution"]


@pytest.mark.unit
def test_html_many_classes_still_renders() -> None:
    page = _parse(render_html(synthetic(k=120)))
    assert page.figures == ["confusion", "recall-support", "distribution"]


@pytest.mark.unit
def test_value_summary_shows_the_scale_of_raw_pixels() -> None:
    from kerasdoctor.core import HIST_BINS, value_summary
    from kerasdoctor.probe import InputStats, Moments

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 4, 4, 3)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    m = Moments.empty(3)
    m.update(x.reshape(-1, 3))
    s = value_summary(InputStats("img", (4, 4, 3), "float32", m), x)
    h = s.histogram
    assert h is not None and s.feature_rms is not None
    assert h.lo == float(np.nanmin(x)) and h.hi == float(np.nanmax(x)) > 200
    assert len(h.counts) == HIST_BINS and sum(h.counts) == x.size - 1  # NaN left out
    assert s.n_features == 3 and all(100 < (v or 0) < 200 for v in s.feature_rms)
    const = np.full((10, 2), 5.0)
    m2 = Moments.empty(2)
    m2.update(const)
    h2 = value_summary(InputStats("c", (2,), "float64", m2), const).histogram
    assert h2 is not None and h2.lo < 5.0 < h2.hi and sum(h2.counts) == 20


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("binary.keras", "binary.npz"),
        ("healthy_savedmodel", "healthy.npz"),
        ("legacy_input_dim.h5", "legacy_keras2.npz"),
        ("healthy_imbalanced.keras", "healthy_imbalanced.npz"),
    ],
)
def test_every_format_renders_the_other_healthy_fixtures(model: str, data: str) -> None:
    r = diagnose_fixture(model, data)
    assert r.verdict == "healthy"
    _assert_self_contained_with_plots(render_html(r), [i.name for i in r.data.inputs])
    root = _junit(render_junit(r, fail_on="warning"))
    assert not root.findall(".//failure") and not root.findall(".//error")
    md = render_markdown(r)
    assert "HEALTHY" in md and all(code(f.id) in md for f in r.findings)


def test_every_format_goes_through_the_dispatcher() -> None:
    r = collapsed()
    assert render(r, "markdown").startswith("## kerasdoctor")
    assert render(r, "junit", fail_on="never").startswith("<?xml")
    assert render(r, "html").startswith("<!DOCTYPE html>")


# The HTML report in a real browser (headless Chromium): tests/test_browser.py.


def test_one_run_writes_several_formats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import fixture_path, run_cli

    html, xml = tmp_path / "r.html", tmp_path / "r.xml"
    r = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "-f",
        "markdown",
        "--report",
        f"html={html}",
        "--report",
        f"junit={xml}",
    )
    assert r.exit_code == 1
    assert "`missing-classes`" in r.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    assert "<failure" in xml.read_text()
    bad = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--report",
        "pdf=x.pdf",
    )
    assert bad.exit_code == 2 and "--report takes FORMAT=FILE" in bad.stderr


# ------------------------------------------------------------------ html: dense sample masks


def _png_pixels(uri: str) -> np.ndarray:
    """A data: URI's PNG as (h, w, 3) uint8."""
    import io

    from matplotlib.image import imread

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    png = base64.b64decode(uri.split(",", 1)[1], validate=True)
    assert png.startswith(PNG_MAGIC)
    img = imread(io.BytesIO(png), format="png")
    return np.round(img[..., :3] * 255).astype(np.uint8)


def _sample_table(html: str) -> list[tuple[int, dict[str, np.ndarray]]]:
    """(sample row, {input|true|pred: pixels}) for each sample row of the page, in order."""
    out = []
    for row, body in re.findall(r'<tr data-sample="(\d+)">(.*?)</tr>', html):
        imgs = dict(re.findall(r'<img data-mask="(\w+)" src="([^"]+)"', body))
        out.append((int(row), {kind: _png_pixels(uri) for kind, uri in imgs.items()}))
    return out


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_dense_html_draws_the_worst_and_seeded_samples() -> None:
    from kerasdoctor.render.html import mask_colors

    r = diagnose_fixture("dense_unet_collapsed.keras", "dense_unet_collapsed.npz")
    samples = r.samples
    assert [s.why for s in samples] == ["worst"] * 3 + ["seeded"] * 3
    # the collapsed U-Net loses every foreground pixel: the worst are those with the most
    worst = [s for s in samples if s.why == "worst"]
    assert all(s.lost == s.foreground > 0 for s in worst)
    assert [s.lost for s in worst] == sorted((s.lost for s in worst), reverse=True)
    html = render_html(r)
    page = _parse(html)  # well formed, and the plots are still the plots
    assert page.figures[:3] == ["confusion", "recall-support", "distribution"]
    table = _sample_table(html)
    assert [row for row, _ in table] == [s.row for s in samples]
    data = np.load(fixture_path("dense_unet_collapsed.npz"))
    colors = [_rgb(c) for c in mask_colors(4)]
    for row, imgs in table:
        assert set(imgs) == {"input", "true", "pred"}
        assert imgs["input"].shape == imgs["true"].shape == imgs["pred"].shape == (32, 32, 3)
        assert (imgs["input"] == data["x"][row]).all()  # uint8 images as they are
        want = np.array(colors, np.uint8)[data["y"][row]]
        assert (imgs["true"] == want).all()  # each class in its palette colour
        assert (imgs["pred"] == colors[0]).all()  # all background: the collapse, seen
    for name in ("background (majority)", "disc", "square", "bar"):
        assert name in html
    assert "void" not in html.split("<h2>Samples</h2>", 1)[1].split("</table>", 1)[0]
    # the JSON report stays as it is: no images, no samples
    text = r.to_json()
    assert "data:image" not in text and "samples" not in r.to_dict()
    assert json.loads(text) == json.loads(replace(r, samples=()).to_json())


def test_dense_html_of_a_healthy_model_draws_its_samples_too() -> None:
    r = diagnose_fixture("dense_unet_ok.keras", "dense_unet_ok.npz")
    assert r.verdict == "healthy"
    html = render_html(r)
    table = _sample_table(html)
    assert len(table) == len(r.samples) == 6
    assert sum(s.why == "worst" for s in r.samples) == 3  # the ones it does worst on
    # the healthy model draws foreground: some predicted pixels are not background
    assert any((imgs["pred"] != 0).any() for _, imgs in table)


def test_void_positions_are_grey_and_in_the_legend(tmp_path: Path) -> None:
    from kerasdoctor.core import Options, diagnose_paths
    from kerasdoctor.render.html import VOID_COLOR

    data = np.load(fixture_path("dense_binary_collapsed.npz"))
    mask = np.ones(data["y"].shape, bool)
    mask[:, :, :4] = False  # the left border does not count
    path = tmp_path / "masked.npz"
    np.savez(path, x=data["x"], y=data["y"], mask=mask)
    r = diagnose_paths(fixture_path("dense_binary_collapsed.keras"), path, Options())
    html = render_html(r)
    grey = _rgb(VOID_COLOR)
    for _, imgs in _sample_table(html):
        for kind in ("true", "pred"):
            assert (imgs[kind][:, :4] == grey).all() and not (imgs[kind][:, 4:] == grey).all()
    assert "void / not counted" in html


def test_taggers_and_single_label_reports_draw_no_samples() -> None:
    tags = diagnose_fixture("tag_collapsed.keras", "tag_collapsed.npz")
    assert tags.samples == ()
    for r in (tags, collapsed(), healthy()):
        html = render_html(r)
        assert "data-sample" not in html and "<h2>Samples" not in html
        assert "<h2>Mask files" not in html


@pytest.mark.unit
def test_the_mask_mapping_of_a_segmentation_folder_is_a_table() -> None:
    r = synthetic(k=3, names=["background", "road", "car"])
    masks = MasksInfo(
        dir="masks",
        kind="rgb",
        mapping="voc",
        matched=12,
        pairs=12,
        suffix="",
        rule="the colours of the Pascal VOC colormap, class by class",
        classes=(
            MaskClass(0, "background", (0, 0, 0), 900),
            MaskClass(1, "road", (128, 0, 0), 80),
            MaskClass(2, "car", None, 0),
        ),
        void=(224, 224, 192),
        pixels_total=980,
        void_pixels=20,
        size=(32, 32),
        resized=False,
    )
    html = render_html(replace(r, data=replace(r.data, masks=masks)))
    _parse(html)
    section = html.split("<h2>Mask files</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section)
    assert len(rows) == 1 + 3 + 1  # head, the classes, void
    assert "#800000" in rows[2] and "road" in rows[2] and "80" in rows[2]
    assert "in no mask" in rows[3]
    assert "void" in rows[4] and "#e0e0c0" in rows[4] and "20" in rows[4]
    assert "12 mask(s) matched" in html and "Pascal VOC" in html
    grey = replace(
        masks,
        kind="grey",
        void=255,
        classes=tuple(
            MaskClass(i, n, i * 100, 5) for i, n in enumerate(["background", "road", "car"])
        ),
    )
    html = render_html(replace(r, data=replace(r.data, masks=grey)))
    assert "value <code>200</code>" in html and "value <code>255</code>" in html
    assert "Mask files" not in render_html(r)  # no mapping, no section


@pytest.mark.unit
def test_the_sample_picker_keeps_a_few_masks_whatever_n() -> None:
    from kerasdoctor.dense import SAMPLE_SHOWN, SAMPLE_WORST, _Picker

    n, batch = 1000, 8
    rng = np.random.default_rng(0)
    fg = rng.integers(0, 500, n)
    lost = (fg * rng.random(n)).astype(np.int64)
    picker = _Picker(n, majority=0, seed=3, spatial=(512, 512), k=21)
    assert picker.stride == 3  # 512 px drawn as 171
    most = 0
    for start in range(0, n, batch):
        pred = np.zeros((min(batch, n - start), 512 * 512), np.int64)
        picker.offer(start, lost[start : start + batch], fg[start : start + batch], pred)
        most = max(most, len(picker.kept))
    assert most <= SAMPLE_WORST + SAMPLE_SHOWN
    chosen = picker.chosen()
    assert len(chosen) == SAMPLE_SHOWN
    share = lost / np.maximum(fg, 1)
    expected = sorted(range(n), key=lambda i: (share[i], lost[i], -i), reverse=True)
    assert [c[0] for c in chosen[:SAMPLE_WORST]] == expected[:SAMPLE_WORST]
    seeded = [int(v) for v in np.random.default_rng(3).permutation(n)[:SAMPLE_SHOWN]]
    assert [c[0] for c in chosen[SAMPLE_WORST:]] == [
        p for p in seeded if p not in expected[:SAMPLE_WORST]
    ][: SAMPLE_SHOWN - SAMPLE_WORST]
    assert all(c[2].shape == (171, 171) and c[2].dtype == np.uint8 for c in chosen)
