"""HCCS inside the model for QAT: it really replaces softmax, masks hold, gradients flow, the CLI runs.

Expectations come from outside hccs_lab.qat: the logits the model computes (seen through
`observe`), the numpy `quantize_logits` / `hccs_float` / `hccs_int` references, hand-derived
straight-through gradients, and the model's own outputs before and after a safetensors round trip.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hccs_lab.models import tiny
from hccs_lab.models.attention import observe
from hccs_lab.cli import main as cli_main
from hccs_lab.models import load
from hccs_lab.retrain import HCCSTables, fake_quantize_linears, fake_quantize_logits, use_hccs
from hccs_lab.core import HCCSParams, hccs_float, hccs_int, quantize_logits, softmax

torch.set_num_threads(2)

# per layer, per head: deliberately different so a mix-up of heads or layers shows
PARAMS = [[HCCSParams(40, 1, 30), HCCSParams(30, 2, 12)], [HCCSParams(50, 3, 16), HCCSParams(20, 1, 20)]]
SCALES = [[0.02, 0.05], [0.03, 0.04]]
TEXTS = ["A fine, funny and touching film.", "Awful.", "The plot drags but the actors are wonderful to watch.",
         "not good"]


def tables() -> HCCSTables:
    col = lambda f: [torch.tensor([f(l, h) for h in range(2)], dtype=torch.float32).view(2, 1, 1) for l in range(2)]
    return HCCSTables(B=col(lambda l, h: PARAMS[l][h].B), S=col(lambda l, h: PARAMS[l][h].S),
                      D=col(lambda l, h: PARAMS[l][h].D), scale=col(lambda l, h: SCALES[l][h]))


@pytest.fixture(scope="module")
def tok():
    return tiny.load_tokenizer()


@pytest.fixture()
def model(tok):
    torch.manual_seed(0)
    m = tiny.build_tiny(pca_init=False, seed=1)
    with torch.no_grad():  # a fresh model attends almost uniformly; sharper logits make softmax and HCCS differ
        for layer in m.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(8.0)
    load((m, tok))
    return m


def run_observed(model, tok, texts=TEXTS):
    enc = tok(texts, padding=True, return_tensors="pt")
    seen = {}
    with observe(model, lambda l, x, k: seen.__setitem__(l, (x.detach().clone(), torch.broadcast_to(k, x.shape).clone()))):
        out = model(**enc, output_attentions=True)
    return enc, seen, out


def test_model_attention_is_hccs_of_its_int8_logits(model, tok):
    use_hccs(model, tables())
    enc, seen, out = run_observed(model, tok)
    lengths = enc["attention_mask"].sum(1).numpy()
    assert len(set(lengths)) > 1  # padding is exercised
    for layer in range(2):
        logits, keymask = (t.numpy() for t in seen[layer])
        probs = out.attentions[layer].detach().numpy()
        scale = np.array(SCALES[layer]).reshape(2, 1)
        q = quantize_logits(logits, scale, mask=keymask)  # numpy reference: row max -> 127
        for head in range(2):
            p_ref = hccs_float(q[:, head].astype(np.float64) * SCALES[layer][head], PARAMS[layer][head],
                               SCALES[layer][head], mask=keymask[:, head])
            np.testing.assert_allclose(probs[:, head], p_ref, atol=2e-6)
            # the integer i16+div kernel agrees up to the floor of its reciprocal 32767 // Z
            p_int = hccs_int(q[:, head], PARAMS[layer][head], "i16", "div", mask=keymask[:, head]) / 32767.0
            Z = PARAMS[layer][head].B * lengths.max()
            assert np.all(np.abs(probs[:, head] - p_int) <= probs[:, head] * Z / 32767 + 1e-4)
        # and it is not softmax
        assert np.abs(probs - softmax(logits, mask=keymask)).max() > 0.02


def test_masked_keys_are_exactly_zero_and_rows_sum_to_one(model, tok):
    use_hccs(model, tables())
    enc, seen, out = run_observed(model, tok)
    am = enc["attention_mask"].bool()
    for layer in range(2):
        p = out.attentions[layer].detach()
        assert torch.all(p[~am[:, None, None, :].expand_as(p)] == 0.0)
        torch.testing.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5, rtol=0)


def test_set_probs_none_restores_exact_softmax(model, tok):
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits
        use_hccs(model, tables())
        hccs = model(**enc).logits
        use_hccs(model, None)
        back = model(**enc).logits
    assert torch.equal(ref, back)
    assert not torch.allclose(ref, hccs)


def test_straight_through_gradient_of_the_int8_logits():
    torch.manual_seed(0)
    x = (torch.randn(2, 2, 3, 7) * 0.5).requires_grad_(True)
    keymask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keymask[1, ..., 5:] = False
    scale = torch.tensor([0.02, 0.05]).view(2, 1, 1)
    w = torch.randn_like(x)
    y = fake_quantize_logits(x, scale, keymask)
    (y * w).sum().backward()
    # forward: the int8 grid values of quantize_logits
    q = quantize_logits(x.detach().numpy(), scale.numpy().reshape(2, 1), mask=keymask.numpy())
    m = np.broadcast_to(keymask.numpy(), x.shape)
    np.testing.assert_allclose(y.detach().numpy(), np.where(m, q * scale.numpy(), 0), atol=1e-6)
    # backward by hand: y = x - max(x) + const inside the grid, so dy/dx = w minus, at the argmax, the row sum of w
    xm = np.where(m, x.detach().numpy(), -np.inf)
    arg = xm.argmax(-1)
    inside = m & (q > -128)  # saturated keys get no gradient
    wn = np.where(inside, w.numpy(), 0.0)
    expect = wn.copy()
    np.put_along_axis(expect, arg[..., None], np.take_along_axis(expect, arg[..., None], -1) - wn.sum(-1, keepdims=True), -1)
    np.testing.assert_allclose(x.grad.numpy(), expect, atol=1e-5)


@pytest.mark.parametrize("variant, padding", [("float", "exclude"), ("u8-clb", "as_min"), ("i16-div", "exclude")])
def test_gradients_reach_query_and_key_weights_through_hccs(model, tok, variant, padding):
    use_hccs(model, tables(), variant=variant, padding=padding)  # deployed: straight through hccs_float
    model.train()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    loss = model(**enc, labels=torch.tensor([1, 0, 1, 0])).loss
    loss.backward()
    for layer in model.bert.encoder.layer:
        for lin in (layer.attention.self.query, layer.attention.self.key):
            g = lin.weight.grad
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_fake_quantized_linears_stay_close_and_train(model, tok):
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits
    n = fake_quantize_linears(model)
    assert n == 2 * 6 + 1  # q, k, v, attn-out, FFN in, FFN out per layer + pooler; the classifier stays float
    use_hccs(model, tables())
    model.train()
    out = model(**enc, labels=torch.tensor([1, 0, 1, 0]))
    out.loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.linear.weight.grad.abs().sum() > 0
    use_hccs(model, None)
    model.eval()
    with torch.no_grad():
        fq = model(**enc).logits
    assert 0 < (fq - ref).abs().max() < 0.2 * ref.abs().max() + 0.05


def test_tiny_safetensors_round_trip_and_corruption(tmp_path, tok):
    model, info = tiny.train_tiny(tmp_path / "tiny", steps=3, n_train=96, progress=False)
    assert info["history"]["steps"] == 3 and len(info["history"]["loss"]) == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tiny" / "model.safetensors"), "pt") as f:
        assert "bert.embeddings.word_embeddings.weight" in f.keys()
    again, tok2 = tiny.load_tiny(tmp_path / "tiny")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, again(**enc).logits)
    assert not list((tmp_path / "tiny").glob("*.tmp"))
    (tmp_path / "tiny" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="unreadable"):
        tiny.load_tiny(tmp_path / "tiny")


def test_pca_embeddings_keep_minilm_geometry():
    from safetensors.torch import load_file

    P = tiny.pca_embeddings(128)
    E = load_file(str(tiny.minilm_path() / "model.safetensors"))["embeddings.word_embeddings.weight"].float()
    assert P.shape == (30522, 128)
    assert abs(float(P.std()) - 0.5) < 1e-3
    # a projection on the top principal axes keeps the token geometry: nearest neighbours mostly survive
    E = E - E.mean(0)
    ids = torch.arange(1000, 1200)
    nn_full = (E[ids] @ E.T).topk(2, -1).indices[:, 1]
    nn_pca = (P[ids] @ P.T).topk(2, -1).indices[:, 1]
    assert (nn_full == nn_pca).float().mean() > 0.3
    # versus a random 128-d projection of the same size, which keeps far fewer
    R = E @ torch.randn(384, 128, generator=torch.Generator().manual_seed(0))
    nn_rand = (R[ids] @ R.T).topk(2, -1).indices[:, 1]
    assert (nn_full == nn_pca).float().mean() > (nn_full == nn_rand).float().mean()


def test_model_attention_is_the_deployed_kernel_output(model, tok):
    """With a kernel variant in the seam, every head's attention is exactly hccs_deployed of its logits."""
    from hccs_lab.core import hccs_deployed

    for padding in ("exclude", "as_min"):
        use_hccs(model, tables(), variant="u8-clb", padding=padding)
        _, seen, out = run_observed(model, tok)
        for layer in range(2):
            logits, keymask = seen[layer]
            t = tables()
            want = hccs_deployed(logits, (t.B[layer], t.S[layer], t.D[layer]), t.scale[layer], "u8-clb",
                                 mask=keymask, padding=padding)
            assert torch.equal(out.attentions[layer].detach(), want)
            pad = ~keymask
            assert pad.any() and (bool(torch.all(want[pad] == 0)) == (padding == "exclude"))
    use_hccs(model, None)


def test_paired_interval_matches_an_index_bootstrap():
    from hccs_lab.retrain.stats import paired_difference

    rng = np.random.default_rng(3)
    ref = rng.random(1275) < 0.82
    flip = rng.random(1275) < 0.06
    a = np.where(flip, ~ref, ref)
    d = paired_difference(a, ref)
    assert d["diff_pp"] == pytest.approx(100 * (a.mean() - ref.mean()))
    assert d["better"] == int(np.sum(a & ~ref)) and d["worse"] == int(np.sum(~a & ref))
    idx = rng.integers(0, 1275, (4000, 1275))
    boot = 100 * (a[idx].mean(1) - ref[idx].mean(1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert abs(d["ci95_pp"][0] - lo) < 0.25 and abs(d["ci95_pp"][1] - hi) < 0.25
    assert d["ci95_pp"][0] <= d["diff_pp"] <= d["ci95_pp"][1]
    same = paired_difference(ref, ref)
    assert same["ci95_pp"] == [0.0, 0.0] and same["p_mcnemar"] == 1.0


def test_controls_and_coarse_grid_obey_the_target():
    from hccs_lab.core import target_violations
    from hccs_lab.retrain.calibration_methods import coarse_candidates
    from hccs_lab.retrain.controls import default_for_target

    for n in (32, 64, 128):
        for target in ("aie4ml", "hccs-lab"):
            assert not target_violations(default_for_target(n, target), n, target)
            c = coarse_candidates(n, target)
            assert 40 <= len(c) <= (32767 // n // 64 + 1) * 6 * 8
            assert all(not target_violations(HCCSParams(*map(int, row)), n, target) for row in c)
    assert default_for_target(64, "hccs-lab") == HCCSParams(508, 4, 127)  # the ReLU-like default
    assert default_for_target(64, "aie4ml") == HCCSParams(508, 4, 126)  # 64 * (508 - 504) = 256


def _intervals(r: dict):
    """Every entry of a results file that carries a paired comparison with float32."""
    yield r["hccs_direct"]
    yield r["hccs_qat"]
    yield from r["controls"].values()
    yield from r["direct"].values()
    for per_g in r["qat"].values():
        yield from per_g.values()
    for g in r["granularity"].values():
        yield g["direct"]
        yield g["qat"]
    yield from r["calibration_methods"].values()


def test_qat_quick_end_to_end_writes_results(tmp_path, monkeypatch, capsys):
    from hccs_lab.retrain.substitute import READINGS

    monkeypatch.setenv("HCCS_LAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "res" / "qat.json"
    assert cli_main(["qat", "--quick", "--model", "tiny", "--variant", "u8-clb", "--out", str(out), "--no-progress"]) == 0
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert r["model"] == "tiny" and r["quick"] is True and "QUICK" in printed
    assert (r["variant"], r["target"], r["padding"], r["pad_to"]) == ("u8-clb", "aie4ml", "as_min", 64)
    assert set(r["controls"]) == {"uniform", "default_params", "int8_softmax"}
    assert set(r["direct"]) == set(READINGS) and r["hccs_direct"]["accuracy"] == r["direct"]["u8-clb"]["accuracy"]
    assert set(r["granularity"]) == {"global", "layer", "head"}
    assert set(r["calibration_methods"]) == {"grid", "gradient", "coarse-grid"}
    assert r["hccs_qat"]["accuracy"] == r["qat"]["u8-clb"]["head"]["accuracy"] == r["granularity"]["head"]["qat"]["accuracy"]
    n = r["data"]["test_sentences"]
    for e in _intervals(r):
        assert 0.0 <= e["accuracy"] <= 1.0
        d = e["vs_float32"]
        lo, hi = d["ci95_pp"]
        assert lo <= d["diff_pp"] <= hi and d["n"] == n
        assert d["diff_pp"] == pytest.approx(100 * (e["accuracy"] - r["float32"]["accuracy"]))
    assert "bootstrap" in r["interval_method"] and "control: uniform attention" in printed
    assert r["settings"]["n_train"] == 512 and n == 256
    assert len(r["fidelity"]["heads"]) == 4 and {e["kind"] for e in r["fidelity"]["examples"]} == {"broad", "focused"}
    assert r["hccs_qat"]["history"]["steps"] == 16 and r["hccs_qat"]["history"]["loss"]
    assert "SST-2" in r["note"] and "u8-clb" in r["note"]
    assert r["environment"]["load_average_at_start"] is not None
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.parametrize("argv, message", [
    (["qat", "--model", "bert-huge", "--out", "{tmp}/r.json"], "unknown model 'bert-huge'"),
    (["qat", "--model", "tiny", "--out", "{tmp}"], "is a directory"),
    (["qat", "--model", "tiny", "--out", "{tmp}/afile/r.json"], "not a directory"),
    (["qat", "--model", "tiny", "--out", "{tmp}/r.txt"], "must end in .json"),
    (["qat", "--model", "tiny", "--epochs", "0", "--out", "{tmp}/r.json"], "qat_epochs must be > 0"),
    (["qat", "--model", "tiny", "--max-len", "48", "--out", "{tmp}/r.json"], "multiple of 32"),
])
def test_bad_input_gives_one_clear_line(tmp_path, capsys, argv, message):
    (tmp_path / "afile").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("model", ["minilm-l6", "tiny"])
def test_findings_of_the_committed_runs_say_what_their_numbers_say(model):
    from hccs_lab.retrain.results import committed_results, findings

    r = committed_results(model)
    d = r["hccs_qat"]["vs_float32"]["diff_pp"]
    line = findings(r)[1]
    if d > 0.5:
        assert "above float32" in line
    elif d >= -0.5:
        assert "within 0.5 points" in line
    else:
        assert "more than the 0.5-point goal" in line and f"{-d:.2f} points below" in line
    uniform = r["controls"]["uniform"]["vs_float32"]["diff_pp"]
    assert f"{uniform:+.1f} points" in findings(r)[2]


def test_jobs_in_worker_processes_give_what_they_give_in_process(tmp_path, monkeypatch):
    """Two spawned workers of one thread each: the same per-sentence results and training losses as one thread here."""
    from hccs_lab.retrain import measure
    from hccs_lab.retrain.experiment import ExperimentSettings, prepare

    monkeypatch.setenv("HCCS_LAB_CACHE", str(tmp_path / "cache"))
    s = ExperimentSettings.for_model("tiny", quick=True, qat_steps=3)
    prep = prepare(s, progress=False)
    plan = measure.plan_run(prep)
    jobs = [j for j in plan.jobs if isinstance(j, measure.QATJob) and j.granularity == "head"]
    jobs += [j for j in plan.jobs if isinstance(j, measure.EvalJob)][:3]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = measure.execute(plan.bench, jobs, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    there = measure.execute(plan.bench, jobs + jobs[:1], workers=2, threads=1, progress=False)
    assert set(here) == set(there) == {j.key for j in jobs}  # a repeated job runs once
    for key in here:
        np.testing.assert_array_equal(here[key]["correct"], there[key]["correct"])
        assert here[key]["correct"].shape == (256,)
    qat = jobs[0].key
    assert here[qat]["history"]["loss"] == there[qat]["history"]["loss"] and there[qat]["history"]["steps"] == 3
    assert there[qat]["fidelity"]["heads"] == here[qat]["fidelity"]["heads"]


def test_workers_must_be_positive(tmp_path, capsys):
    assert cli_main(["qat", "--model", "tiny", "--workers", "0", "--out", str(tmp_path / "r.json")]) == 2
    assert "workers must be >= 1, got 0" in capsys.readouterr().err

