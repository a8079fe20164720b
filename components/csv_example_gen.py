"""CsvExampleGen for real-world CSV dialects.

TFX's CsvExampleGen splits the header on ',' and reports a bad row as
`Invalid CSV line: [...]`. This one reads any delimiter with Python's csv module
(quoted header names with spaces, as in the UCI wine files), turns headers into
feature names with `specs.dataset.clean_feature_name`, drops columns, can add a
feature naming the file each row came from, and names the file and line of
every bad row. Column types are inferred over the whole split like TFX's
(int, else float, else string), so a non-numeric value in a numeric column
reaches ExampleValidator as a type anomaly instead of being coerced.
"""
from __future__ import annotations

import csv
import fnmatch
import os
import re
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.example_gen_options import pack_options, unpack_options
from specs.dataset import clean_feature_name

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)
# Column type lattice: a column is the widest type any of its cells needs.
_EMPTY, _INTEGER, _REAL, _TEXT = 0, 1, 2, 3
_OTHER_DELIMITERS = (";", "\t", "|", ",")


class CsvFormatError(ValueError):
    """A CSV file cannot be read as the spec describes; the message names file and line."""


def cell_type(cell: str) -> int:
    if cell == "":
        return _EMPTY
    if _INT.match(cell):
        return _INTEGER
    if _FLOAT.match(cell):
        return _REAL
    return _TEXT


def not_utf8(error: UnicodeDecodeError) -> str:
    return (f"byte {error.object[error.start:error.start + 1]!r} is not UTF-8 text; "
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")


def read_header(path: str, delimiter: str) -> list[str]:
    """Reads and cleans the header row; catches the commonest mistake, a wrong delimiter."""
    with fileio.open(path, "rb") as f:
        try:
            first_line = f.readline().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise CsvFormatError(f"{path}, line 1: {not_utf8(e)}") from e
    if not first_line.strip():
        raise CsvFormatError(f"{path}: the first line is empty; expected a header row")
    header = next(csv.reader([first_line], delimiter=delimiter))
    if len(header) == 1:
        likely = [d for d in _OTHER_DELIMITERS if d != delimiter and d in first_line]
        if likely:
            raise CsvFormatError(
                f"{path}: the header has a single column when split on {delimiter!r}, but contains "
                f"{likely[0]!r}; set `source.delimiter: {likely[0]!r}` in the data set spec")
    names = [clean_feature_name(h) for h in header]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CsvFormatError(f"{path}: header names {duplicates} repeat after cleaning")
    return names


def check_has_data_rows(path: str) -> None:
    """A file with a header and no rows would train on nothing (and fail deep in Keras): stop here."""
    with fileio.open(path, "rb") as f:
        f.readline()  # the header
        for line in f:
            if line.strip():
                return
    raise CsvFormatError(f"no data rows in {path}: it has a header line only; add rows or remove the file")


def file_feature_value(path: str, values: Mapping[str, str]) -> str:
    """The value of the per-file feature for `path`: the first glob that matches its name."""
    base = os.path.basename(path)
    for pattern, value in values.items():
        if fnmatch.fnmatch(base, pattern):
            return value
    raise CsvFormatError(f"{path}: no entry of source.file_feature.values matches {base!r}")


def decoded_lines(path: str, raw: IO[bytes]) -> Iterator[str]:
    """The file's lines as text (UTF-8, a leading byte-order mark dropped); a bad byte names its line."""
    for number, line in enumerate(iter(raw.readline, b""), start=1):
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise CsvFormatError(f"{path}, line {number}: {not_utf8(e)}") from e


class _ReadRows(beam.DoFn):
    """Yields each data row of a CSV file as a list of strings, checking its width."""

    def __init__(self, delimiter: str, width: int, file_values: Mapping[str, str] | None):
        self._delimiter = delimiter
        self._width = width
        self._file_values = file_values

    def process(self, path: str) -> Iterable[list[str]]:
        extra = [file_feature_value(path, self._file_values)] if self._file_values else []
        with beam.io.filesystems.FileSystems.open(path) as raw:
            reader = csv.reader(decoded_lines(path, raw), delimiter=self._delimiter)
            next(reader, None)  # header, read separately
            try:
                for row in reader:
                    if not row:
                        continue  # blank line
                    if len(row) != self._width:
                        raise CsvFormatError(
                            f"{path}, line {reader.line_num}: expected {self._width} fields separated "
                            f"by {self._delimiter!r} as in the header, found {len(row)}")
                    yield [cell.strip() for cell in row] + extra
            except csv.Error as e:
                raise CsvFormatError(f"{path}, line {reader.line_num}: {e}") from e


class _InferColumnTypes(beam.CombineFn):
    """Widest type each column needs across all rows (int < float < string)."""

    def __init__(self, width: int):
        self._width = width

    def create_accumulator(self) -> list[int]:
        return [_EMPTY] * self._width

    def add_input(self, acc: list[int], row: Sequence[str]) -> list[int]:
        for i, cell in enumerate(row):
            if acc[i] != _TEXT:
                acc[i] = max(acc[i], cell_type(cell))
        return acc

    def merge_accumulators(self, accs: Iterable[list[int]]) -> list[int]:
        return [max(column) for column in zip(*accs)]

    def extract_output(self, acc: list[int]) -> list[int]:
        return acc


def _to_feature(cell: str, column_type: int) -> tf.train.Feature:
    if cell == "" or column_type == _EMPTY:
        empty = {_INTEGER: "int64_list", _REAL: "float_list"}.get(column_type, "bytes_list")
        return tf.train.Feature(**{empty: {}})
    if column_type == _INTEGER:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(cell)]))
    if column_type == _REAL:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(cell)]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[cell.encode("utf-8")]))


def _to_example(row: Sequence[str], types: Sequence[int], names: Sequence[str],
                keep: Sequence[int]) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(
        feature={names[i]: _to_feature(row[i], types[i]) for i in keep}))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _CsvToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                  split_pattern: str) -> beam.pvalue.PCollection:
    options = unpack_options(exec_properties)
    delimiter = options.get("delimiter", ",")
    file_feature = options.get("file_feature") or {}
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    files = sorted(fileio.glob(pattern))
    if not files:
        raise CsvFormatError(f"no CSV file matches {pattern}")
    names = read_header(files[0], delimiter)
    for path in files:
        check_has_data_rows(path)
    for path in files[1:]:
        other = read_header(path, delimiter)
        if other != names:
            missing, extra = [n for n in names if n not in other], [n for n in other if n not in names]
            difference = f"missing {missing}, unexpected {extra}" if missing or extra else "columns in another order"
            raise CsvFormatError(f"{path}: header differs from {files[0]} ({difference}); files of one data set "
                                 "must have the same columns")
    width = len(names)
    if file_feature:
        names = names + [file_feature["name"]]
    drop = set(options.get("drop_columns", []))
    keep = [i for i, n in enumerate(names) if n not in drop]

    rows = (pipeline
            | "ListFiles" >> beam.Create(files)
            | "ReadRows" >> beam.ParDo(_ReadRows(delimiter, width, file_feature.get("values"))))
    declared = options.get("declared_types") or {}
    types = beam.pvalue.AsSingleton(
        rows
        | "InferTypes" >> beam.CombineGlobally(_InferColumnTypes(len(names)))
        | "ApplySchemaTypes" >> beam.Map(lambda inferred: [reconcile_type(t, declared.get(n))
                                                           for t, n in zip(inferred, names)]))
    return rows | "ToExample" >> beam.Map(_to_example, types, names, keep)


def reconcile_type(inferred: int, declared: str | None) -> int:
    """The column type to write: the schema's where the data fits it, else what the data needs.

    A FLOAT feature whose cells are all whole numbers stays FLOAT, a BYTES feature
    of digits (codes, ids) stays BYTES; a value the declared type cannot hold (text
    in a number column, decimals in an INT one) keeps the inferred wider type, so
    ExampleValidator reports the mismatch.
    """
    if declared == "BYTES":
        return _TEXT
    if declared == "FLOAT" and inferred in (_EMPTY, _INTEGER):
        return _REAL
    if declared == "INT" and inferred == _EMPTY:
        return _INTEGER
    return inferred


class Executor(BaseExampleGenExecutor):
    """Beam executor: reads CSV files of any dialect into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToExample


def CsvExampleGen(input_base: str, *, delimiter: str = ",", drop_columns: Sequence[str] = (),
                  file_feature: Mapping[str, Any] | None = None, pattern: str = "*",
                  declared_types: Mapping[str, str] | None = None,
                  output_config: example_gen_pb2.Output | None = None) -> FileBasedExampleGen:
    """A FileBasedExampleGen over `input_base/pattern` with this module's CSV executor.

    `file_feature` = {"name": "type", "values": {"*red*": "red", "*white*": "white"}}
    adds a string feature whose value depends on the file a row came from.
    `declared_types` (feature -> INT/FLOAT/BYTES, from the curated schema) settle
    columns the data alone cannot type; see `reconcile_type`.
    """
    options: dict[str, Any] = {"delimiter": delimiter, "drop_columns": list(drop_columns),
                               "declared_types": dict(declared_types or {})}
    if file_feature:
        options["file_feature"] = dict(file_feature)
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)]),
        output_config=output_config,
        custom_config=pack_options(options, __name__),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id("CsvExampleGen")
