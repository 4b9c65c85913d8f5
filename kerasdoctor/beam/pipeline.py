"""The Beam pipeline: shards -> batches -> model (once per worker) -> CombineFn over ProbeState.

    Create(shards) | ReadShard | Predict (setup() loads the model) | CombineGlobally(probe)
                   | write the merged ProbeState to temp_location

The launcher then finishes the merged state into the Evidence and builds the Report with the
ordinary checks and ranking (core.build_report), exactly as `kerasdoctor diagnose` on an .npz.
Only this module imports apache_beam.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import posixpath
import re
import shutil
import socket
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from kerasdoctor.beam.layout import NPZ, Shard, ShardSet, find_shards, open_file
from kerasdoctor.beam.reader import Batch, ReadSpec, input_keys, read_batches
from kerasdoctor.errors import InputError
from kerasdoctor.evidence import Evidence
from kerasdoctor.probe import ProbeLayout, ProbeState
from kerasdoctor.sampling import sample_indices

DEFAULT_RUNNER = "DirectRunner"
METRICS_NAMESPACE = "kerasdoctor"
FIRST_ROWS = 64  # rows the launcher reads and predicts itself: bad data fails before the run


@dataclass(frozen=True)
class ModelSource:
    """How every worker loads the model (picklable): the path and the loading options."""

    path: str
    unsafe: bool = False
    custom_objects: str | None = None  # a .py file; must exist on the workers too
    output_name: str | None = None

    def load(self) -> Any:
        from kerasdoctor.load import load_custom_objects, load_model

        custom = load_custom_objects(self.custom_objects) if self.custom_objects else None
        return load_model(
            local_copy(self.path),
            unsafe=self.unsafe,
            custom_objects=custom,
            output_name=self.output_name,
        )


def local_copy(path: str) -> str:
    """A local path for a model on a remote file system (gs://...): copied once per process.

    A .keras/.h5 file is copied as it is; a SavedModel directory file by file.
    """
    if "://" not in path:
        return path
    root = path.rstrip("/")
    key = uuid.uuid5(uuid.NAMESPACE_URL, root).hex
    target = os.path.join(
        tempfile.gettempdir(), "kerasdoctor-models", key, posixpath.basename(root)
    )
    if os.path.exists(target):
        return target
    try:
        tree = [m.path for r in FileSystems.match([root + "/**"]) for m in r.metadata_list]
    except Exception:  # nothing below it: a single file
        tree = []
    for src_path in tree or [root]:
        dest = os.path.join(target, src_path[len(root) + 1 :]) if tree else target
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open_file(src_path) as src, open(dest + ".part", "wb") as dst:
            dst.write(src.read())
        os.replace(dest + ".part", dest)
    return target


# ------------------------------------------------------------------ the transforms


class ReadShard(beam.DoFn):
    """A shard -> its rows in batches with their global row ids."""

    def __init__(self, spec: ReadSpec) -> None:
        self.spec = spec

    def process(self, shard: Shard) -> Iterator[Batch]:
        yield from read_batches(shard, self.spec)


class Predict(beam.DoFn):
    """Loads the model once per worker (setup) and runs each batch through it with the taps."""

    def __init__(self, model: ModelSource, layout: ProbeLayout) -> None:
        self.model = model
        self.layout = layout
        self.lm: Any = None
        self.predictor: Any = None
        self.rows: Any = None

    def setup(self) -> None:
        from kerasdoctor.model_facts import read_facts
        from kerasdoctor.predictor import Predictor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lm = self.model.load()
            self.predictor = Predictor(self.lm, read_facts(self.lm))
        # rows predicted per worker process: shows how the runner spread the shards
        self.rows = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, f"rows@{socket.gethostname()}:{os.getpid()}"
        )
        mine = ProbeLayout.of(self.predictor)
        if mine != self.layout:  # the taps must line up with what the combiner expects
            raise RuntimeError(
                f"the model on this worker probes {mine}, the launcher's {self.layout}"
            )

    def process(
        self, batch: Batch
    ) -> Iterator[tuple[list[Any], np.ndarray, list[np.ndarray], np.ndarray]]:
        arrays, y, rows = batch
        xs = bind_batch(arrays, y, self.lm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = self.predictor.run_batch(xs)
        self.rows.inc(int(y.shape[0]))
        yield xs, y, outs, rows


def bind_batch(arrays: dict[str, np.ndarray], y: np.ndarray, lm: Any) -> list[Any]:
    """Match a batch's arrays to the model inputs as load.bind_inputs does for an .npz."""
    from kerasdoctor.load import Labels, RawData, bind_inputs

    bound = bind_inputs(RawData("<shard>", dict(arrays), Labels(y, "index")), lm)
    n = int(y.shape[0])
    return [a[0:n] for a in bound]  # materialise views (an added length-1 axis) as slices do


class ProbeCombineFn(beam.CombineFn):
    """The probe's mergeable state as a Beam combiner: update per batch, merge exactly."""

    def __init__(self, layout: ProbeLayout, seed: int) -> None:
        self.layout = layout
        self.seed = seed

    def create_accumulator(self) -> ProbeState:
        return ProbeState(self.layout, seed=self.seed)

    def add_input(self, state: ProbeState, element: Any) -> ProbeState:
        xs, y, outs, rows = element
        state.update(xs, y, outs, rows)
        return state

    def merge_accumulators(self, states: Any) -> ProbeState:
        it = iter(states)
        first: ProbeState = next(it)  # Beam allows mutating (only) the first accumulator
        for other in it:
            first.merge(other)
        return first

    def extract_output(self, state: ProbeState) -> ProbeState:
        return state


def _write_state(state: ProbeState, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


# ------------------------------------------------------------------ the launcher


@dataclass
class ShardedData:
    """What the launcher learnt about the data before the run (for the report)."""

    shards: ShardSet
    spec: ReadSpec
    class_names: list[str] | None
    label_encoding: str
    label_width: int | None
    n_total: int
    worker_rows: dict[str, int] = field(default_factory=dict)  # filled by the run


def plan(
    lm: Any,
    pattern: str,
    *,
    x_key: str | None = None,
    y_key: str = "y",
    batch_size: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> ShardedData:
    """Match the shards, find their offsets, choose the features, check the first rows."""
    from kerasdoctor.beam.layout import feature_columns
    from kerasdoctor.beam.tfrecord import iter_records
    from kerasdoctor.probe import default_batch_size

    if batch_size is not None and batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {batch_size}")
    shards = find_shards(pattern, label_key=y_key)
    manifest = shards.manifest
    first = next(s for s in shards.shards if s.rows > 0)
    names = list(manifest.class_names) if manifest and manifest.class_names else None
    encoding, width = (manifest.label_encoding, manifest.label_width) if manifest else (None, None)
    columns: tuple[Any, ...] = ()
    record = b""
    if shards.format == NPZ:
        with open_file(first.path) as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
            available = [k for k in npz.files if k not in (y_key, "class_names", "mask")]
            if names is None and "class_names" in npz.files:
                names = [str(v) for v in npz["class_names"].tolist()]
    else:
        with open_file(first.path) as f:
            head = next(iter_records(f, first.path), None)
        if head is None:
            raise InputError(f"DATA: {first.path} holds no records")
        record = head
        from kerasdoctor.beam.tfrecord import example_columns

        available = [k for k in example_columns(record) if k != y_key]
    if x_key is not None:
        if x_key not in available:
            raise InputError(
                f"DATA: {first.path} has no '{x_key}' feature "
                f"(found: {', '.join(sorted(available))})"
            )
        available = [x_key]
    keys = input_keys(available, lm.inputs, first.path)
    if shards.format != NPZ:
        shapes = {k: tuple(s.shape[1:]) for k, s in zip(keys, lm.inputs)}
        columns = tuple(feature_columns(record, keys, y_key, manifest, shapes, first.path))
        label_shape = columns[-1].shape
        if encoding is None:
            is_str = np.dtype(columns[-1].dtype).kind in "US"
            encoding = "string" if is_str else ("one-hot" if label_shape else "index")
            width = int(label_shape[0]) if label_shape else None
    n_total = shards.n_samples
    # the same rows as `kerasdoctor diagnose --sample` on the .npz
    selected = sample_indices(n_total, sample, seed)
    spec = ReadSpec(
        shards.format,
        tuple(keys),
        y_key,
        min(FIRST_ROWS, first.rows),
        columns,
        tuple(names) if names is not None else None,
        None,
    )
    arrays, y, _ = next(read_batches(first, spec, limit=FIRST_ROWS))
    if encoding is None:  # .npz shards without a manifest: the first shard's encoding
        from kerasdoctor.load import decode_labels

        with open_file(first.path) as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
            labels = decode_labels(npz[y_key], names, where=f"DATA: {first.path}: '{y_key}'")
        encoding, width = labels.encoding, labels.width
        names = names or labels.class_names
    xs = bind_batch(arrays, y, lm)
    size = int(batch_size or default_batch_size(xs))
    spec = replace(
        spec,
        batch_size=size,
        selected=selected,
        class_names=tuple(names) if names is not None else None,
    )
    return ShardedData(
        shards,
        spec,
        names,
        encoding or "index",
        width,
        int(selected.size) if selected is not None else n_total,
    )


def run_to_result(
    build: Callable[[Any, str], None], pipeline_args: Sequence[str], prefix: str
) -> tuple[Any, Any]:
    """Run a pipeline whose last step writes one pickled result to the path it is given:
    the options (the DirectRunner by default, no worker log chatter), a launcher-readable
    temp location, a worker's InputError surfaced as one line (with the worker log when it
    ran locally), the temp files removed. Returns (the result read back, the PipelineResult).
    `build(pipeline, out_path)` adds the steps."""
    args = list(pipeline_args)
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=ERROR")  # workers: no log chatter
    options = PipelineOptions(args)
    std = options.view_as(beam.options.pipeline_options.StandardOptions)
    std.runner = std.runner or DEFAULT_RUNNER
    temp = options.view_as(beam.options.pipeline_options.GoogleCloudOptions).temp_location
    local_temp = None
    if temp is None:
        if "direct" not in str(std.runner).lower():
            raise InputError(
                f"the {std.runner} writes its result where the launcher can read it: pass "
                "--pipeline-option temp_location=gs://bucket/tmp (or another shared path)"
            )
        local_temp = tempfile.mkdtemp(prefix="kerasdoctor-beam-")
        temp = local_temp
    out_path = FileSystems.join(temp, f"kerasdoctor-{prefix}-{uuid.uuid4().hex}.pkl")
    try:
        p = beam.Pipeline(options=options)
        build(p, out_path)
        with _local_worker_output(local_temp is not None) as worker_log:
            try:
                result = p.run()
                result.wait_until_finish()
            except Exception as exc:
                err = _worker_error(exc)
                if isinstance(err, InputError) and worker_log is not None:
                    worker_log.keep = True
                    raise InputError(f"{err} (Beam's worker log: {worker_log.path})") from exc
                raise
        with open_file(out_path) as f:
            return pickle.loads(f.read()), result
    except InputError:
        raise
    except Exception as exc:
        err = _worker_error(exc)
        if err is exc:
            raise
        raise err from exc
    finally:
        _remove(out_path)
        if local_temp is not None:
            shutil.rmtree(local_temp, ignore_errors=True)


def run_probe_pipeline(
    model: ModelSource,
    layout: ProbeLayout,
    data: ShardedData,
    *,
    seed: int = 0,
    pipeline_args: Sequence[str] = (),
    n_classes_hint: int = 0,
) -> Evidence:
    """Run the pipeline and finish the merged probe state into the Evidence."""

    def build(p: Any, out_path: str) -> None:
        _ = (
            p
            | "Shards" >> beam.Create(data.shards.shards)
            | "Read" >> beam.ParDo(ReadShard(data.spec))
            | "Predict" >> beam.ParDo(Predict(model, layout))
            | "Probe" >> beam.CombineGlobally(ProbeCombineFn(layout, seed))
            | "Write" >> beam.Map(_write_state, out_path)
        )

    state: ProbeState
    state, result = run_to_result(build, pipeline_args, "probe")
    data.worker_rows = _worker_rows(result)
    return state.finish(n_classes_hint, data.spec.batch_size)


def _worker_rows(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))[
            "counters"
        ]
    except Exception:  # a runner without metrics support
        return {}
    out: dict[str, int] = {}
    for c in counters:
        name = c.key.metric.name.partition("@")[2]
        value = c.committed if c.committed is not None else c.attempted
        out[name] = out.get(name, 0) + int(value or 0)
    return out


def _remove(path: str) -> None:
    try:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception:  # best effort: a leftover temp file is harmless
        pass


_INPUT_ERROR = re.compile(r"InputError: (DATA: .*|MODEL: .*)")


@dataclass
class _WorkerLog:
    """Where local workers' stderr went; kept when it explains a failure."""

    path: str
    keep: bool = False


@contextlib.contextmanager
def _local_worker_output(local: bool) -> Iterator[_WorkerLog | None]:
    """Local runs: workers are child processes that inherit our stderr, where Beam prints its
    own tracebacks and start-up warnings. Send file descriptor 2 to a log file while the
    pipeline runs, so the user gets kerasdoctor's one line (with the log's path on failure).
    Remote runners keep their workers' logs where they always are."""
    if not local or os.environ.get("KERASDOCTOR_DEBUG"):
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="kerasdoctor-beam-workers-", suffix=".log")
    log = _WorkerLog(path)
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield log
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        if not log.keep:
            os.unlink(path)


def _worker_error(exc: BaseException) -> BaseException:
    """A worker's InputError comes back as text inside the runner's error: surface it."""
    text = str(exc)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, InputError):
            return cause
        cause = cause.__cause__ or cause.__context__
    m = _INPUT_ERROR.search(text)
    if m:
        return InputError(m.group(1).strip())
    return exc


def diagnose_shards(
    model_path: str,
    pattern: str,
    options: Any = None,
    *,
    pipeline_args: Sequence[str] = (),
    custom_objects_path: str | None = None,
) -> Any:
    """The Report of MODEL on the shards matching PATTERN: the probe runs as a Beam pipeline,
    then the ordinary checks and ranking (core.build_report), as `kerasdoctor diagnose` does.

    Custom objects reach the workers as a file: pass its path (`custom_objects_path`).
    """
    from kerasdoctor.core import Options, build_report
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.predictor import Predictor

    opts = options or Options()
    if opts.custom_objects and not custom_objects_path:
        raise InputError(
            "custom objects reach the pipeline's workers as a file: pass "
            "custom_objects_path (the CLI's --custom-objects FILE)"
        )
    source = ModelSource(str(model_path), opts.unsafe, custom_objects_path, opts.output_name)
    # Library warnings describe what the checks report as findings (see core._diagnose).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = source.load()
        facts = read_facts(lm)
        from kerasdoctor.beam.tasks import diagnose_task

        task_report = diagnose_task(source, lm, facts, pattern, opts, pipeline_args)
        if task_report is not None:  # issue 16: dense and multi-label models
            return task_report
        predictor = Predictor(lm, facts)
        ev, data = probe_shards(
            source, lm, facts, predictor, pattern, opts, pipeline_args=pipeline_args
        )
        return build_report(
            lm,
            facts,
            predictor,
            ev,
            data_path=pattern,
            class_names=data.class_names,
            label_encoding=data.label_encoding,
            opts=opts,
            shards=len(data.shards.shards),
            sampled_from=data.shards.n_samples if data.spec.selected is not None else None,
        )


def probe_shards(
    source: ModelSource,
    lm: Any,
    facts: Any,
    predictor: Any,
    pattern: str,
    opts: Any,
    *,
    pipeline_args: Sequence[str] = (),
) -> tuple[Evidence, ShardedData]:
    """Plan and run the pipeline for a model loaded from `source`: (Evidence, what was read)."""
    from kerasdoctor.core import class_count_hint

    data = plan(
        lm,
        pattern,
        x_key=opts.x_key,
        y_key=opts.y_key,
        batch_size=opts.batch_size,
        sample=opts.sample,
        seed=opts.seed,
    )
    hint = class_count_hint(data.label_width, data.class_names, facts)
    ev = run_probe_pipeline(
        source,
        ProbeLayout.of(predictor),
        data,
        seed=opts.seed,
        pipeline_args=pipeline_args,
        n_classes_hint=hint,
    )
    if data.label_encoding in ("index", "binary"):  # decided on all labels, as decode_labels
        data.label_encoding = "binary" if ev.y_true.size and ev.y_true.max() <= 1 else "index"
    return ev, data
