"""CSV dialects in our ExampleGen: the UCI wine files (semicolons, quoted headers with spaces).

The ExampleGen test runs the real component (LocalDagRunner, Beam) on real rows
and compares every tf.Example with the file; the error tests call the reader
functions the executor uses.
"""
import csv
import pathlib

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.csv_example_gen import (_EMPTY, _INTEGER, _REAL, _TEXT, CsvFormatError, _ReadRows, read_header,
                                        reconcile_type)
from tests.support import isolated_config, write_sample
from pipeline.pipeline_def import make_example_gen
from specs.dataset import PROJECT_ROOT, clean_feature_name, load_spec

WINE_DIR = PROJECT_ROOT / "data/wine_quality"
WINE_HEADERS = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
                "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol", "quality"]


def test_header_names_become_clean_feature_names():
    assert read_header(str(WINE_DIR / "winequality-white.csv"), ";") == [clean_feature_name(h) for h in WINE_HEADERS]
    assert clean_feature_name("fixed acidity") == "fixed_acidity"
    assert clean_feature_name(" total  sulfur-dioxide (mg/l) ") == "total_sulfur_dioxide_mg_l"
    assert clean_feature_name("8x8 pixel") == "f_8x8_pixel"


def test_wrong_delimiter_names_file_and_the_delimiter_to_use():
    with pytest.raises(CsvFormatError, match=r"winequality-red\.csv: .*single column when split on ','.*"
                                             r"set `source\.delimiter: ';'`"):
        read_header(str(WINE_DIR / "winequality-red.csv"), ",")


def test_ragged_row_names_file_and_line(tmp_path):
    path = write_sample(WINE_DIR / "winequality-white.csv", tmp_path, 5)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(";", 1)[0]  # line 4 loses its last field
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CsvFormatError, match=rf"{path.name}, line 4: expected 12 fields separated by ';'.*found 11"):
        list(_ReadRows(";", 12, None).process(str(path)))


def read_examples(examples_uri: str) -> list[tf.train.Example]:
    records = []
    for path in sorted(pathlib.Path(examples_uri).glob("Split-*/*.gz")):
        records += [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    return records


def run_example_gen(spec, data: pathlib.Path, tmp_path: pathlib.Path) -> list[tf.train.Example]:
    """The spec's real ExampleGen alone (LocalDagRunner, Beam) over `data`; all examples it wrote."""
    config = isolated_config(tmp_path, input_base=str(data))
    root = tmp_path / "root"
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="csv_dialect", pipeline_root=str(root), components=[make_example_gen(spec, config)],
        enable_cache=False, metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        beam_pipeline_args=list(config.beam_args)))
    return read_examples(str(next((root / "CsvExampleGen" / "examples").iterdir())))


@pytest.mark.parametrize("inferred, declared, written", [
    (_INTEGER, "FLOAT", _REAL), (_EMPTY, "FLOAT", _REAL), (_INTEGER, "BYTES", _TEXT), (_EMPTY, "INT", _INTEGER),
    (_TEXT, "FLOAT", _TEXT), (_REAL, "INT", _REAL), (_TEXT, "INT", _TEXT), (_INTEGER, None, _INTEGER)])
def test_schema_types_settle_columns_the_data_cannot_type(inferred, declared, written):
    assert reconcile_type(inferred, declared) == written


@pytest.mark.e2e
def test_whole_numbers_in_a_float_column_stay_float(tmp_path):
    """A file whose Balance and EstimatedSalary happen to be whole numbers is still typed by the schema."""
    data = tmp_path / "data"
    path = write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", data, 30)
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    money = [header.index("Balance"), header.index("EstimatedSalary")]
    rows = [[str(int(float(c))) if i in money else c for i, c in enumerate(row)] for row in rows]
    path.write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    examples = run_example_gen(load_spec("churn"), data, tmp_path)
    assert len(examples) == 30
    for example in examples:
        features = example.features.feature
        assert features["Balance"].WhichOneof("kind") == "float_list"
        assert features["EstimatedSalary"].WhichOneof("kind") == "float_list"
        assert features["CreditScore"].WhichOneof("kind") == "int64_list"


@pytest.mark.e2e
def test_example_gen_reads_the_semicolon_files_with_the_file_feature(tmp_path):
    """The wine spec through the real ExampleGen: names, types and every value match the files."""
    spec = load_spec("wine")
    data = tmp_path / "data"
    for name in ("winequality-red.csv", "winequality-white.csv"):
        write_sample(WINE_DIR / name, data, 40)
    examples = run_example_gen(spec, data, tmp_path)

    expected = []
    for name, wine_type in (("winequality-red.csv", "red"), ("winequality-white.csv", "white")):
        with (data / name).open(newline="") as f:
            reader = csv.reader(f, delimiter=";")
            header = [clean_feature_name(h) for h in next(reader)]
            expected += [(dict(zip(header, row)), wine_type) for row in reader]
    assert len(examples) == len(expected) == 80

    columns = spec.numeric_features + (spec.label,)
    actual = []
    for example in examples:
        features = example.features.feature
        assert set(features) == set(spec.feature_names) | {spec.label}
        assert features["quality"].int64_list.value and features["type"].bytes_list.value
        actual.append((features["type"].bytes_list.value[0].decode(),)
                      + tuple(float((features[n].float_list.value or features[n].int64_list.value)[0]) for n in columns))
    # Values as the file has them, at tf.Example's float32 precision.
    wanted = [(wine_type,) + tuple(float(np.float32(row[n])) for n in columns) for row, wine_type in expected]
    assert sorted(actual) == sorted(wanted)


def test_beam_error_message_keeps_file_and_line(tmp_path):
    """A ragged row inside a Beam pipeline still surfaces the file and line."""
    path = write_sample(WINE_DIR / "winequality-white.csv", tmp_path, 3)
    path.write_text(path.read_text() + "7;0.27;0.36\n")
    with pytest.raises(Exception, match=rf"{path.name}, line 5: expected 12 fields"):
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create([str(path)]) | beam.ParDo(_ReadRows(";", 12, None))
