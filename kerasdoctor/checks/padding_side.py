"""padding-side: token sequences padded on the other side than in training.

Keras' `pad_sequences` pads at the front by default (padding="pre"), while
`TextVectorization(output_sequence_length=...)` and hand-written padding put the zeros at the
end. A recurrent model whose Embedding does not mask padding (mask_zero=False) reads every
padding id as input: trained on one side and fed the other, it reads a run of padding where it
never saw one, its final state forgets the words, and the predictions collapse. The check
re-runs the model with the padding moved to the other side (an experiment on the bounded
sample) and fires when that gives the model back.
"""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._data import INDEX_LAYERS, prediction_symptoms, symptom_ids
from kerasdoctor.checks.base import (
    OUTPUT,
    PREDICTIONS,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

PAD = 0  # the padding id of pad_sequences, TextVectorization and Embedding(mask_zero=True)
OTHER = {"pre": "post", "post": "pre"}

SPEC = CheckSpec(
    id="padding-side",
    kind=Kind.CAUSE,
    summary=(
        "Token sequences padded on the other side than in training (pad_sequences pads "
        '"pre" by default, TextVectorization and hand-written padding "post"), read by a '
        "model that does not mask padding."
    ),
    measures=(
        "Only for 2-D integer inputs read as token ids (by an Embedding or a lookup layer, "
        "when the model's layers can be read). In each row of the bounded class-stratified "
        "sample, the padding id 0 forms a run at the front ('pre') when every 0 of the row "
        "lies in its leading run, at the end ('post') likewise; rows without 0 or made only of "
        "0 count for neither side. An input is padded on a side when at least "
        "min_padded_share of its rows are padded on it. When the predictions show a symptom a "
        "data defect can explain (prediction-collapse, missing-classes, constant-output), the "
        "model is re-run on the sample with the padding of those rows moved to the other side "
        "(the same tokens, in the same order). The padding side is the cause when that raises "
        "balanced accuracy by at least min_gain and by noise_z times the sampling noise of the "
        "difference (sqrt(2) x 0.5 sqrt(sum 1/n_k) / K on the sample's class sizes, scaled up "
        "when the experiment was screened on fewer rows), and removes at least "
        "min_error_removed of the balanced error (1 - balanced accuracy)."
    ),
    fix=(
        'Pad the data the way the training data was padded (pad_sequences(..., padding="pre") '
        'is Keras\' default; TextVectorization pads "post"), or build the Embedding with '
        "mask_zero=True and retrain, so the recurrent layers skip padding wherever it is."
    ),
    thresholds={
        "min_padded_share": Threshold(
            0.5,
            "most rows padded on one side: padding applies to every row shorter than the "
            "maximum length, while a word id 0 is reserved by Keras and never a real token, "
            "so a side holding most rows is the data's padding convention, not chance",
        ),
        "min_gain": Threshold(
            0.10,
            "ten points of balanced accuracy: moving a few padding ids in a model that masks "
            "them, or that pools over positions, moves it by far less; a wrong padding side "
            "under a recurrent layer moves it by tens of points",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors of the difference of two balanced accuracies on the same "
            "class sizes: one experiment, but the bound is a worst case and a wrong alarm "
            "sends the user to rewrite a working pipeline",
        ),
        "min_error_removed": Threshold(
            0.5,
            "padding as in training gives back the trained model, so most of the balanced "
            "error goes; a broken model (untrained, over-regularised) only shuffles its "
            "answers when its inputs shift and gains a few points by chance",
        ),
    },
    fires_on=("seq_pad_post",),
    order=165,
    needs=frozenset({"symptoms", "experiments"}),
    explains=frozenset({PREDICTIONS, OUTPUT}),
    tier=2,
)


# ------------------------------------------------------------------ pure measurements


def padding_runs(x: np.ndarray) -> dict[str, Any]:
    """Per row of a 2-D id array: how many rows are padded 'pre' / 'post' (every PAD of the
    row in one run at that end), and the median length of those runs."""
    a = np.asarray(x)
    rows, width = int(a.shape[0]), int(a.shape[1])
    nz = a != PAD
    words = nz.sum(axis=1)
    lead = np.where(words > 0, np.argmax(nz, axis=1), width)
    trail = np.where(words > 0, np.argmax(nz[:, ::-1], axis=1), width)
    pads = width - words
    pre = (words > 0) & (lead > 0) & (pads == lead)
    post = (words > 0) & (trail > 0) & (pads == trail)
    out: dict[str, Any] = {"rows": rows, "length": width}
    for side, mask, run in (("pre", pre, lead), ("post", post, trail)):
        out[f"{side}_rows"] = int(mask.sum())
        out[f"{side}_median_run"] = float(np.median(run[mask])) if mask.any() else 0.0
    out["side"] = "pre" if out["pre_rows"] >= out["post_rows"] else "post"
    out["share"] = out[f"{out['side']}_rows"] / rows if rows else 0.0
    return out


def move_padding(x: np.ndarray, side: str) -> np.ndarray:
    """The rows padded on `side` with their padding moved to the other end (same tokens, same
    order); other rows as they are."""
    a = np.asarray(x)
    width = a.shape[1]
    nz = a != PAD
    words = nz.sum(axis=1)
    pads = width - words
    if side == "post":  # trailing run -> front: roll right by its length
        run = np.where(words > 0, np.argmax(nz[:, ::-1], axis=1), 0)
        shift = np.where((run > 0) & (pads == run), -run, 0)
    else:  # leading run -> end: roll left by its length
        run = np.where(words > 0, np.argmax(nz, axis=1), 0)
        shift = np.where((run > 0) & (pads == run), run, 0)
    idx = (np.arange(width)[None, :] + shift[:, None]) % width
    out: np.ndarray = np.take_along_axis(a, idx, axis=1)
    return out


def token_inputs(ctx: Context, min_share: float) -> list[dict[str, Any]]:
    """The 2-D token-id inputs of the sample padded on one side in at least min_share rows.

    Token ids: integers, or whole non-negative floats fed to an integer input or to an
    Embedding/lookup layer (keras.Input defaults to float32); integers that the model reads as
    values (counts into a Dense) are not ids, and their column order is no padding."""
    found = []
    for i, x in enumerate(ctx.sample_inputs or []):
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2 or a.dtype.kind not in "iuf":
            continue
        name = (
            ctx.input_names[i]
            if i < len(ctx.input_names)
            else (ctx.evidence.inputs[i].name if i < len(ctx.evidence.inputs) else f"input_{i}")
        )
        consumers = ctx.facts.input_consumers.get(name, ())
        index_read = any(c in INDEX_LAYERS for c in consumers)
        if consumers and not index_read:
            continue
        if a.dtype.kind == "f":
            want = ctx.input_dtypes[i] if i < len(ctx.input_dtypes) else ""
            try:
                int_input = np.dtype(want).kind in "iu"
            except TypeError:
                int_input = False
            if (
                not (int_input or index_read)
                or not np.all(np.isfinite(a))
                or not np.all(a == np.round(a))
            ):
                continue
        if np.any(a < 0):
            continue  # not token ids
        runs = padding_runs(a)
        if runs["share"] >= min_share:
            found.append({"index": i, "input": name, **runs})
    return found


def restored(
    exp: dict[str, Any], noise: float, min_gain: float, noise_z: float, min_error_removed: float
) -> dict[str, Any] | None:
    """Whether the experiment (the contract's evidence.experiment, plus the sample's rows in
    `sample_rows` when it was screened on fewer) gives the model back: the gain, the bar it
    had to clear and the share of the balanced error removed, or None."""
    b0, b1 = exp.get("balanced_accuracy_before"), exp.get("balanced_accuracy_after")
    if b0 is None or b1 is None or not (np.isfinite(b0) and np.isfinite(b1)):
        return None
    rows, sample_rows = int(exp.get("rows", 0)), int(exp.get("sample_rows", exp.get("rows", 0)))
    scale = float(np.sqrt(sample_rows / rows)) if 0 < rows < sample_rows else 1.0
    gain = float(b1) - float(b0)
    bar = max(min_gain, noise_z * float(noise) * scale)
    removed = gain / (1.0 - float(b0)) if b0 < 1.0 else 0.0
    if gain >= bar and removed >= min_error_removed:
        return {"gain": gain, "required_gain": bar, "error_removed": removed}
    return None


# ------------------------------------------------------------------ the check


def _experiment(ctx: Context, inputs: list[dict[str, Any]]) -> Any:
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    moves = {d["index"]: d["side"] for d in inputs}
    what = "moving the padding of " + ", ".join(
        f"input '{d['input']}' from the {'end' if d['side'] == 'post' else 'front'} to the "
        f"{'front' if d['side'] == 'post' else 'end'}"
        for d in inputs
    )

    def transform(xs: list[np.ndarray]) -> list[np.ndarray]:
        return [move_padding(x, moves[i]) if i in moves else x for i, x in enumerate(xs)]

    key = "padding-side:" + "+".join(f"{d['input']}:{d['side']}" for d in inputs)
    return exps.inputs(key, what, transform)


def run(ctx: Context) -> list[Finding]:
    inputs = token_inputs(ctx, ctx.threshold(SPEC, "min_padded_share"))
    if not inputs:
        raise NotApplicable("no integer token input padded with 0 at one end in most rows")
    symptoms = symptom_ids(ctx)
    if not symptoms:  # the experiment runs on a symptom: a healthy model pays nothing
        return []
    res = _experiment(ctx, inputs)
    if res is None or not res.ok:
        return []
    exps = ctx.experiments
    assert exps is not None
    exp = res.to_dict()
    verdict = restored(
        dict(exp, sample_rows=exps.rows),
        exps.noise,
        ctx.threshold(SPEC, "min_gain"),
        ctx.threshold(SPEC, "noise_z"),
        ctx.threshold(SPEC, "min_error_removed"),
    )
    if verdict is None:
        return []
    from kerasdoctor.experiments import recalls

    before = recalls(exps.y, exps.base_pred, exps.k)
    evidence: dict[str, Any] = {
        "inputs": [{k: v for k, v in d.items() if k != "index"} for d in inputs],
        "experiment": exp,
        "noise": exps.noise,
        **verdict,
        "recall_before": [_num(r) for r in before],
        "recall_after": [_num(r) for r in res.recall_after],
        "symptoms": symptoms,
        "cured": True,
    }
    found = prediction_symptoms(ctx)
    # the classes the quoted symptom titles name, so the text and the evidence agree
    evidence["symptom_classes"] = _named_classes(found[s].evidence for s in symptoms if s in found)
    side = inputs[0]["side"]
    b0, b1 = float(exp["balanced_accuracy_before"]), float(exp["balanced_accuracy_after"])
    title = (
        f"The sequences are padded at the {'end' if side == 'post' else 'front'} ('{side}') "
        f"but the model works on them padded '{OTHER[side]}': moving the padding raises "
        f"balanced accuracy from {b0:.1%} to {b1:.1%}"
    )
    described = "; ".join(
        f"input '{d['input']}': {d[d['side'] + '_rows']} of {d['rows']} rows padded "
        f"'{d['side']}' (median run {d[d['side'] + '_median_run']:.0f} of {d['length']} ids)"
        for d in inputs
    )
    detail = (
        f"{described}. Re-run on {exp['rows']} rows of the class-stratified sample with the "
        f"padding moved to the other side (same tokens, same order), the model's balanced "
        f"accuracy goes from {b0:.1%} to {b1:.1%} (a gain of {verdict['gain']:.1%}; sampling "
        f"noise would explain at most {verdict['required_gain']:.1%}). The model was trained "
        f"on sequences padded '{OTHER[side]}': without mask_zero its recurrent layer reads the "
        "padding as input, and a run of it where training never had one washes out what it "
        "read. The predictions show it: "
        + "; ".join(found[s].title for s in symptoms if s in found)
        + "."
    )
    fixes = [
        Fix(
            f"Pad the sequences '{OTHER[side]}', as in training"
            + (" (pad_sequences' default)" if side == "post" else ""),
            code=_pad_code(side, int(inputs[0]["length"])),
        ),
        Fix(
            "Or make the model ignore padding wherever it is: mask it in the Embedding and retrain",
            code="layers.Embedding(vocab_size, dim, mask_zero=True)  # 0 is padding; the "
            "LSTM/GRU after it skips masked steps",
        ),
    ]
    return [finding(SPEC, Severity.ERROR, title, detail, evidence, fixes)]


def _pad_code(side: str, length: int) -> str:
    want = OTHER[side]
    return (
        "from keras.utils import pad_sequences\n"
        f'x = pad_sequences(sequences, maxlen={length}, padding="{want}")  # as in training\n'
        "# or move the padding of rows already padded (0 is padding):\n"
        "import numpy as np\n"
        + (
            "n = (x == 0)[:, ::-1].cumprod(axis=1).sum(axis=1)  # trailing zeros per row\n"
            "x = np.stack([np.roll(row, k) for row, k in zip(x, n)])"
            if side == "post"
            else "n = (x == 0).cumprod(axis=1).sum(axis=1)  # leading zeros per row\n"
            "x = np.stack([np.roll(row, -k) for row, k in zip(x, n)])"
        )
    )


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _named_classes(evidences: Any) -> list[int]:
    """The class indices a symptom's title names: the collapsed-onto class, the missing ones."""
    out: set[int] = set()
    for ev in evidences:
        for key in ("dominant_class", "predicted_class"):
            if isinstance(ev.get(key), int):
                out.add(int(ev[key]))
        out |= {int(m["class"]) for m in ev.get("missing", ()) if isinstance(m, dict)}
    return sorted(out)
