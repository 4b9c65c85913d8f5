"""degenerate-inputs: the inputs do not vary (blank token rows, constant features, one row)."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# How many constant features an input lists in the evidence.
MAX_FEATURES_LISTED = 10

SPEC = CheckSpec(
    id="degenerate-inputs",
    kind=Kind.CAUSE,
    summary=(
        "The inputs do not vary: identical rows, all-padding or all-out-of-vocabulary token "
        "sequences, constant features (e.g. a tokenizer re-created and never fit)."
    ),
    measures=(
        "Three measurements, each of a way the rows can stop telling the classes apart. "
        "(1) Blank token rows, counted exactly in the single pass for every input that feeds "
        "an Embedding: rows whose every id is 0 or 1. Keras reserves those ids: 0 is padding "
        "(TextVectorization's and StringLookup's mask, pad_sequences' fill value) and 1 is the "
        "out-of-vocabulary id ('[UNK]'), so such a row holds no word; a TextVectorization or "
        "tokenizer re-created and never fit (or given a vocabulary that matches nothing) "
        "turns every text into one. The input is flagged when the share of blank rows is >= "
        "min_blank_share; the distinct ids seen are counted too (a bitmap, exact). (2) "
        "Constant features, from the pass's per-feature min and max (last axis: columns, "
        "channels or sequence positions): a feature with min == max over every row carries "
        "nothing. The input is flagged when the share of its features that are constant is "
        ">= min_constant_share. (3) Identical rows, on the bounded, class-stratified sample "
        "the pass keeps: rows are grouped by their exact bytes (every input together) and the "
        "best balanced accuracy any function of the rows can reach is computed (per group of "
        "identical rows the class with the largest share of its class; mean over classes). "
        "Distinct rows give 1.0; one row repeated gives chance, 1/K. Its lift over chance, "
        "(ceiling - 1/K) / (1 - 1/K), <= max_ceiling_lift flags the rows. Severity: an error "
        "when the predictions show a symptom (no model can separate rows that look the same: "
        "it outputs one class, the label prior, for all of them); info otherwise."
    ),
    fix=(
        "Feed the model the inputs it was trained on. For text: fit the tokenizer / "
        "TextVectorization on the training text (`vectorizer.adapt(train_texts)`) and use "
        "that fitted object, or its exact saved vocabulary, at prediction time; better, save "
        "it inside the model. Otherwise find the step that made the rows identical or the "
        "features constant (a fill value, a scaler fit on one row, a column lost in a join, "
        "one sample broadcast to the batch) and fix it."
    ),
    thresholds={
        "min_blank_share": Threshold(
            0.5,
            "half the rows hold no word: they all look the same to the model and get one "
            "prediction whatever their label, so at least half the predictions ignore the "
            "input; with K balanced classes (K-1)/2K of all rows are wrong from that alone",
        ),
        "min_constant_share": Threshold(
            1.0,
            "every feature constant: the input is one fixed value for every row and carries "
            "nothing; while some features vary they may still carry the labels (whether they "
            "do is what max_ceiling_lift measures), and a constant column or padding position "
            "is common in healthy data",
        ),
        "max_ceiling_lift": Threshold(
            0.25,
            "even a perfect lookup of the rows gets no more than a quarter of the way from "
            "chance to 100% balanced accuracy: most rows are copies of rows of other "
            "classes, so the inputs cannot carry the labels (the ceiling is measured on the "
            "sample; with many distinct rows it is near 1.0 and never fires)",
        ),
    },
    order=85,
    explains=frozenset({OUTPUT, PREDICTIONS, "no-signal", "dead-units", "batchnorm-statistics"}),
    tier=1,
    needs=frozenset({"symptoms"}),
    fires_on=("scn_tokens_unfit",),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    min_blank = ctx.threshold(SPEC, "min_blank_share")
    min_constant = ctx.threshold(SPEC, "min_constant_share")
    max_lift = ctx.threshold(SPEC, "max_ceiling_lift")
    samples = _sample_arrays(ctx)
    groups = _row_groups(samples) if samples is not None else None
    rows: list[dict[str, Any]] = []
    for i in range(len(ev.inputs)):
        row = _describe_input(ctx, i, samples, groups)
        reasons = []
        if row.get("blank_share") is not None and row["blank_share"] >= min_blank:
            reasons.append("blank-tokens")
        if row["n_features"] and row["constant_share"] >= min_constant:
            reasons.append("constant-features")
        row["reasons"] = reasons
        rows.append(row)
    ceiling = _ceiling(ctx, groups)
    identical = ceiling is not None and ceiling["lift"] <= max_lift
    flagged = [r for r in rows if r["reasons"]]
    if not flagged and not identical:
        return []
    symptoms = list(ctx.symptoms)
    severity = Severity.ERROR if symptoms else Severity.INFO
    title, parts = _title_and_details(ctx, flagged, ceiling if identical else None)
    consequence = (
        " Rows that look the same to the model get the same prediction whatever their label: "
        "it can only output one class for them (the label prior it learned)."
    )
    if symptoms:
        consequence += (
            " The predictions show it: " + "; ".join(ctx.symptoms[s].title for s in symptoms) + "."
        )
    else:
        consequence += " The predictions show no symptom, so this is a risk, not the failure."
    evidence = {
        "inputs": rows,
        "sample": ceiling,
        "identical_rows": identical,
        "symptoms": symptoms,
    }
    return [
        finding(
            SPEC,
            severity,
            title,
            "; ".join(parts) + "." + consequence,
            evidence,
            _fixes(ctx, flagged),
        )
    ]


# ------------------------------------------------------------------ measurements


def _sample_arrays(ctx: Context) -> list[np.ndarray] | None:
    """The bounded sample's inputs, when they line up with its labels (rows, per input)."""
    ev = ctx.evidence
    xs = ctx.sample_inputs
    if xs is None or not xs or ev.y_true.ndim != 1:
        return None
    n = int(ev.sample_index.shape[0])
    if n == 0 or any(int(np.asarray(x).shape[0]) != n for x in xs):
        return None
    return [np.asarray(x) for x in xs]


def _row_ids(x: np.ndarray) -> np.ndarray:
    """A group id per row: equal ids for rows with the same bytes."""
    n = int(x.shape[0])
    flat = np.ascontiguousarray(x.reshape(n, -1))
    if flat.shape[1] == 0:
        return np.zeros(n, np.int64)
    if flat.dtype.kind == "O":  # objects (strings of a SavedModel): compare their text
        keys = np.array(["\x1f".join(map(str, r)) for r in flat])
        return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)
    void = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).reshape(-1)
    return np.unique(void, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _row_groups(samples: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per input, a group id per sample row; and one over every input together."""
    per_input = [_row_ids(x) for x in samples]
    joint = np.unique(np.stack(per_input, axis=1), axis=0, return_inverse=True)[1]
    return per_input, joint.reshape(-1).astype(np.int64)


def _ceiling(
    ctx: Context, groups: tuple[list[np.ndarray], np.ndarray] | None
) -> dict[str, Any] | None:
    """The best balanced accuracy any function of the sample's rows can reach."""
    if groups is None:
        return None
    ev = ctx.evidence
    g = groups[1]
    y = ev.y_true[ev.sample_index].astype(np.int64)
    k = max(int(ev.n_classes), int(y.max(initial=0)) + 1)
    table = np.zeros((int(g.max(initial=-1)) + 1, k), np.int64)
    np.add.at(table, (g, y), 1)
    n_c = table.sum(axis=0)
    present = n_c > 0
    kp = int(present.sum())
    if kp < 2:
        return None
    # a lookup table picks one class per group of identical rows; the best pick is the class
    # with the largest share of its own class in that group (balanced accuracy sums those)
    ceiling = float((table[:, present] / n_c[present]).max(axis=1).sum() / kp)
    chance = 1.0 / kp
    return {
        "rows": int(g.size),
        "distinct_rows": int(table.shape[0]),
        "ceiling_balanced_accuracy": ceiling,
        "chance": chance,
        "lift": (ceiling - chance) / (1.0 - chance),
    }


def _describe_input(
    ctx: Context,
    i: int,
    samples: list[np.ndarray] | None,
    groups: tuple[list[np.ndarray], np.ndarray] | None,
) -> dict[str, Any]:
    ev = ctx.evidence
    st = ev.inputs[i]
    m = st.moments
    measured = m.count > 0  # an all-NaN feature is nonfinite-inputs' business
    constant = measured & (m.min == m.max)
    n_features = int(m.n_features)
    row: dict[str, Any] = {
        "input": st.name,
        "index": i,
        "shape": list(st.shape),
        "n_features": n_features,
        "constant_features": int(constant.sum()),
        "constant_share": float(constant.sum() / n_features) if n_features else 0.0,
        "constant_values": [
            {"feature": int(f), "value": float(m.min[f])}
            for f in np.flatnonzero(constant)[:MAX_FEATURES_LISTED]
        ],
        "blank_rows": None,
        "blank_share": None,
    }
    tok = st.tokens
    if tok is not None and tok.rows > 0:
        row.update(
            {
                "token_rows": tok.rows,
                "blank_rows": tok.blank_rows,
                "blank_share": tok.blank_rows / tok.rows,
                "distinct_ids": tok.n_distinct,
                "max_id": tok.max_id,
                "ids_out_of_range": tok.out_of_range,
            }
        )
    if samples is not None and groups is not None:
        row["sample_rows"] = int(samples[i].shape[0])
        row["sample_distinct_rows"] = int(groups[0][i].max(initial=-1)) + 1
        if tok is not None and samples[i].dtype.kind in "iuf":
            row["blank_predictions"] = _blank_predictions(ctx, samples[i])
    return row


def _blank_predictions(ctx: Context, x: np.ndarray) -> dict[str, Any] | None:
    """What the model predicts for the sample's blank rows: one class, whatever the label."""
    from kerasdoctor.evidence import RESERVED_TOKEN_IDS

    ev = ctx.evidence
    wide = x.reshape(x.shape[0], -1)
    if wide.shape[1] == 0:
        return None
    blank = wide.max(axis=1) < RESERVED_TOKEN_IDS
    if not blank.any():
        return None
    pred = ev.y_pred[ev.sample_index][blank]
    counts = np.bincount(pred, minlength=ev.n_classes)
    top = int(np.argmax(counts))
    return {
        "rows": int(blank.sum()),
        "top_class": top,
        "top_share": float(counts[top] / blank.sum()),
        "counts": counts.tolist(),
    }


# ------------------------------------------------------------------ the message


def _title_and_details(
    ctx: Context, flagged: list[dict[str, Any]], ceiling: dict[str, Any] | None
) -> tuple[str, list[str]]:
    n = ctx.evidence.n_samples
    parts = []
    for r in flagged:
        if "blank-tokens" in r["reasons"]:
            line = (
                f"{r['blank_rows']} of {r['token_rows']} rows of input '{r['input']}' hold "
                f"only ids 0/1 (padding/OOV): no word; {r['distinct_ids']} distinct id(s) "
                f"seen, the largest {r['max_id']}"
            )
            bp = r.get("blank_predictions")
            if bp:
                line += (
                    f"; the model calls {bp['top_share']:.0%} of the sample's "
                    f"{bp['rows']} blank rows {ctx.cls(bp['top_class'])}"
                )
            parts.append(line)
        if "constant-features" in r["reasons"]:
            parts.append(
                f"input '{r['input']}': {r['constant_features']} of {r['n_features']} "
                f"features take one value in every row"
            )
    if ceiling is not None:
        parts.append(
            f"the sample's {ceiling['rows']} rows hold {ceiling['distinct_rows']} distinct "
            f"row(s): no model can reach more than {ceiling['ceiling_balanced_accuracy']:.1%} "
            f"balanced accuracy on them (chance {ceiling['chance']:.1%})"
        )
    if flagged:
        r = flagged[0]
        if "blank-tokens" in r["reasons"]:
            title = (
                f"Input '{r['input']}' carries no words: {r['blank_rows']} of "
                f"{r['token_rows']} rows hold only padding/OOV ids (0/1)"
            )
        elif r["constant_features"] == r["n_features"]:
            title = (
                f"Input '{r['input']}' is the same in every one of {n} rows (all "
                f"{r['n_features']} of its features are constant)"
            )
        else:
            title = (
                f"Input '{r['input']}' does not vary: {r['constant_features']} of "
                f"{r['n_features']} features are constant over {n} rows"
            )
    else:
        assert ceiling is not None
        title = (
            f"The rows do not vary: {ceiling['distinct_rows']} distinct row(s) in a sample "
            f"of {ceiling['rows']}"
        )
    return title, parts


def _fixes(ctx: Context, flagged: list[dict[str, Any]]) -> list[Fix]:
    fixes = []
    tokens = [r for r in flagged if "blank-tokens" in r["reasons"]]
    if tokens:
        shape = tokens[0]["shape"]
        length = shape[-1] if len(shape) == 1 else "SEQUENCE_LENGTH"
        fixes.append(
            Fix(
                "Fit the tokenizer / TextVectorization on the training text and use that "
                "fitted object (or its exact saved vocabulary) at prediction time; better, "
                "save it inside the model so prediction takes raw text",
                code=(
                    "vectorizer = keras.layers.TextVectorization(max_tokens=20000, "
                    f"output_sequence_length={length})\n"
                    "vectorizer.adapt(train_texts)  # fit on the TRAINING text, once\n"
                    "# rebuilding it elsewhere: strip the newline readlines() keeps\n"
                    '# vocab = [w.rstrip("\\n") for w in open("vocab.txt")]\n'
                    "# vectorizer = keras.layers.TextVectorization("
                    f"output_sequence_length={length}, vocabulary=vocab)\n"
                    'text = keras.Input(shape=(1,), dtype="string")\n'
                    "end_to_end = keras.Model(text, model(vectorizer(text)))  # save this one\n"
                    "# end_to_end.predict(tf.constant(texts)[:, None]) takes raw strings\n"
                    "x = np.asarray(vectorizer(texts))\n"
                    'print("rows with a known word:", (x > 1).any(axis=1).mean())  # ~1.0'
                ),
            )
        )
    if len(tokens) < len(flagged) or not flagged:
        fixes.append(
            Fix(
                "Find the step that made the rows identical or the features constant (a fill "
                "value, a scaler fit on one row, a column lost in a join, one sample "
                "broadcast to the batch) and feed the real values",
                code=(
                    "flat = x.reshape(len(x), -1)\n"
                    'print(len(np.unique(flat, axis=0)), "distinct rows of", len(x))\n'
                    "const = x.reshape(-1, x.shape[-1]).std(axis=0) == 0\n"
                    'print("constant features:", np.flatnonzero(const))'
                ),
            )
        )
    return fixes
