"""The design-review report: every section present, self-contained offline HTML, clean failures."""
from __future__ import annotations

import html as html_lib
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy.stats import kendalltau

from hccs_lab import report as R
from hccs_lab.core import VARIANTS
from hccs_lab.cli import main as cli_main
from hccs_lab.core import hccs_int, softmax

SETTINGS = R.ReportSettings.quick(granularities=("head",))


@pytest.fixture(scope="module")
def ctx():
    return R.build_context(SETTINGS, progress=False)


@pytest.fixture(scope="module")
def sections(ctx):
    return R.build_sections(ctx, progress=False)


@pytest.fixture(scope="module")
def page(sections):
    return R.render_html(sections, SETTINGS)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.sections, self.stack_errors, self.stack = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag not in ("meta", "br", "img", "input", "hr", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.stack_errors.append(tag)
        else:
            self.stack.pop()


def test_every_section_is_in_the_page_and_the_html_is_well_formed(sections, page):
    keys = [s.key for s in sections]
    assert keys == ["model", "spread", "calibration", "rank", "kernel", "throughput", "deploy", "qat"]
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.sections == keys
    assert not parsed.stack_errors and parsed.stack == [], (parsed.stack_errors[:5], parsed.stack[-5:])
    n_figures = sum(1 for s in sections for b in s.blocks if not isinstance(b, str))
    assert n_figures >= 4
    assert page.count("Plotly.newPlot(") == n_figures


def test_page_is_self_contained(page):
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert page.count(bundle) == 1, "plotly.js must be inlined exactly once"
    assert not re.search(r"<script[^>]+src=", page), "no external script may be referenced"
    assert not re.search(r"<link[^>]+href=[\"']?https?://", page)
    outside_bundle = page.replace(bundle, "")
    assert not re.search(r"https?://(?!www\.w3\.org/)", outside_bundle), "no URL outside the inlined plotly.js"


def test_calibration_section_reports_the_calibration(ctx, sections):
    cal = ctx.calibration
    html = "".join(b for b in sections[2].blocks if isinstance(b, str))
    assert f"{cal.mean_kl_before:.4f} &rarr; {cal.mean_kl_after:.4f}" in html
    assert cal.mean_kl_after < cal.mean_kl_before
    # every head's row is in the table, with its parameters
    for h in cal.heads[:: max(1, len(cal.heads) // 7)]:
        assert f"<td>{h.layer}</td><td>{h.head}</td><td>{h.B}</td><td>{h.S}</td><td>{h.D}</td>" in html


def test_rank_preservation_agrees_with_scipy_on_one_head(ctx):
    rows = R.rank_rows(ctx)
    layer, head = 1, 3
    mine = next(r for r in rows if r["layer"] == layer and r["head"] == head)
    hr = ctx.bank[layer, head]
    params, scale = ctx.calibration.params(layer, head), ctx.calibration.scale(layer, head)
    # independent recomputation: quantize each row on its own, run HCCS on the valid keys only
    from hccs_lab.core import quantize_logits

    vals = []
    for logits, mask in zip(hr.logits, hr.mask):
        if not mask.any():
            continue
        x = quantize_logits(logits[mask][None].astype(np.float64), scale)[0]
        q = hccs_int(x, params).astype(np.float64)
        t = kendalltau(softmax(logits[mask].astype(np.float64)), q).statistic
        vals.append(0.0 if np.isnan(t) else t)  # a constant row: scipy says nan, hccs_lab.metrics says 0
    assert mine["rows"] == len(vals)
    assert mine["tau"] == pytest.approx(float(np.mean(vals)), abs=1e-6)


def test_kernel_section_is_bit_exact_and_shows_cpp(ctx, sections):
    kc = ctx.kernel_choice
    assert kc.bit_exact and kc.n_rows > 0
    assert kc.variant in VARIANTS
    # the chosen one is the fastest among those within the KL tolerance of exact i16+div
    exact = kc.rows[0]["kl"]
    eligible = [r for r in kc.rows if r["kl"] <= exact * R.KL_TOLERANCE + 1e-12]
    assert kc.variant == max(eligible, key=lambda r: r["gelem"])["variant"]
    html = "".join(b for b in sections[4].blocks if isinstance(b, str))
    assert "<pre class='cpp'>" in html and "bit-exact" in html
    # the excerpt is the real generated code of this head: its constants and its three passes
    assert f"#define HCCS_B {kc.params.B}\n#define HCCS_S {kc.params.S}\n#define HCCS_D {kc.params.D}" in html
    for line in kc.generated.source.splitlines():
        if "// pass_norm" in line:
            assert html_lib.escape(line) in html
            break
    else:
        pytest.fail("generated source has no pass_norm block")


def test_qat_table_when_results_given(ctx, tmp_path):
    results = {"model": "tiny", "quick": True, "float32": {"accuracy": 0.80}, "hccs_direct": {"accuracy": 0.60},
               "hccs_qat": {"accuracy": 0.78}}
    f = tmp_path / "qat.json"
    f.write_text(json.dumps(results))
    ctx.qat = R.read_qat_results(f)
    ctx.settings = R.ReportSettings.quick(granularities=("head",), qat_results=str(f))
    try:
        html = "".join(b for b in R.section_qat(ctx).blocks if isinstance(b, str))
    finally:
        ctx.qat, ctx.settings = None, SETTINGS
    assert "<td>80.0</td><td>60.0</td><td>78.0</td><td>-2.0</td>" in html
    assert "quick run" in html


@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable JSON"),
    (json.dumps({"model": "tiny", "float32": {"accuracy": 0.8}}), "hccs_direct.accuracy"),
    (json.dumps([1, 2]), "top level"),
])
def test_bad_qat_file_is_a_clear_error_and_writes_nothing(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "review.html"
    rc = cli_main(["report", "--model", "tiny", "--out", str(out), "--qat-results", str(bad), "--quick"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_missing_qat_file_and_unknown_model(tmp_path, capsys):
    out = tmp_path / "review.html"
    assert cli_main(["report", "--model", "minilm-l6", "--out", str(out), "--qat-results", str(tmp_path / "no.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["report", "--model", "gpt-17", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'gpt-17'" in err and "minilm-l6" in err
    assert not out.exists()


def test_failure_half_way_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "review.html"
    out.write_text("old report")

    def broken(ctx):
        raise RuntimeError("section failed")

    monkeypatch.setattr(R.sections, "SECTIONS", R.SECTIONS[:1] + (("broken", broken),))
    with pytest.raises(RuntimeError, match="section failed"):
        R.write_report(R.ReportSettings.quick(granularities=("head",), samples=2), out, progress=False)
    assert out.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.html"]


def test_write_atomic_cleans_up_when_writing_fails(tmp_path):
    out = tmp_path / "r.html"

    with pytest.raises(TypeError):
        R.write_atomic(out, 12345)  # not text: the write fails after the temp file exists
    assert list(tmp_path.iterdir()) == []


def test_calibration_for_another_model_is_refused(ctx, tmp_path, capsys):
    f = ctx.calibration.to_json(tmp_path / "cal.json")
    data = json.loads(f.read_text())
    data["model"] = "tiny"
    f.write_text(json.dumps(data))
    out = tmp_path / "review.html"
    assert cli_main(["report", "--model", "minilm-l6", "--out", str(out), "--calibration", str(f), "--quick"]) == 2
    assert "made for model 'tiny'" in capsys.readouterr().err
    assert not out.exists()


def test_deploy_section_runs_the_heads_through_aie4ml(ctx, sections):
    import aie4ml

    from hccs_lab.core import target_violations

    sec = next(s for s in sections if s.key == "deploy")
    text = "".join(b for b in sec.blocks if isinstance(b, str))
    assert f"aie4ml {aie4ml.__version__}" in text and "bit-exact</b> with <code>hccs_int</code>" in text
    assert "src/parameters.h" in text and "hccs_export.json" in text
    kc = ctx.kernel_choice
    p = ctx.calibration.params(kc.layer, kc.head)
    assert ctx.calibration.target == "aie4ml" and not target_violations(p, ctx.calibration.seq_len, "aie4ml")
    # the chosen head's own numbers appear in the generated parameters.h lines
    assert f"B[CAS_NUM] = {{{p.B}}}" in text and f"Dmax[CAS_NUM] = {{{p.D}}}" in text


def test_throughput_section_lists_every_published_point_and_the_whole_head(sections):
    from hccs_lab.aie.published import validation_points

    sec = next(s for s in sections if s.key == "throughput")
    text = "".join(b for b in sec.blocks if isinstance(b, str))
    for p in validation_points():
        assert html_lib.escape(p.name) in text
    assert "QK^T" in text and "softmax share" in text
    n_figs = sum(1 for b in sec.blocks if not isinstance(b, str))
    assert n_figs == 2  # throughput by variant, the whole-head breakdown
