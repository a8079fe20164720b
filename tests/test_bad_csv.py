"""Bad CSV files as a new user would try them, through the real CLI (`python -m pipeline run`).

Each one stops before training with a clear error line (no traceback without
--verbose), exit code 1, and nothing pushed. The files are 60 real churn rows,
broken one way each.
"""
from __future__ import annotations

import pathlib

import pytest

from pipeline import metadata
from pipeline.cli import main
from specs.dataset import PROJECT_ROOT

pytestmark = pytest.mark.e2e
CHURN_CSV = PROJECT_ROOT / "data/churn/Churn_Modelling.csv"


def rows() -> list[str]:
    return CHURN_CSV.read_text().splitlines()[:61]


def with_cell(column: str, line: int, value: str) -> str:
    lines = rows()
    index = lines[0].split(",").index(column)
    cells = lines[line].split(",")
    cells[index] = value
    lines[line] = ",".join(cells)
    return "\n".join(lines) + "\n"


def drop_column(column: str) -> str:
    index = rows()[0].split(",").index(column)
    return "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in rows()) + "\n"


BAD_FILES = {
    # name: (file content, text the error line must contain)
    "empty_file": (b"", "the first line is empty; expected a header row"),
    "header_only": ((rows()[0] + "\n").encode(), "no data rows in"),
    "header_only_and_blank_lines": ((rows()[0] + "\n\n\n").encode(), "no data rows in"),
    "ragged_row": (("\n".join(rows()) + "\n1,2,3\n").encode(),
                   "line 62: expected 14 fields separated by ',' as in the header, found 3"),
    "wrong_delimiter": (("\n".join(line.replace(",", ";") for line in rows()) + "\n").encode(),
                        "set `source.delimiter: ';'`"),
    "duplicate_header": (("\n".join([rows()[0].replace("Tenure", "Age")] + rows()[1:]) + "\n").encode(),
                         "header names ['Age'] repeat after cleaning"),
    "latin1_bytes": (("\n".join(rows()).replace("Hargrave", "Hérgrave") + "\n").encode("latin-1"),
                     "line 2: byte b'\\xe9' is not UTF-8 text; save the file as UTF-8"),
    "missing_column": (drop_column("Geography").encode(), "feature 'Geography': Column dropped"),
    "text_in_a_number_column": (with_cell("CreditScore", 7, "n/a").encode(),
                                "feature 'CreditScore': Unexpected data type"),
    "unseen_category": (with_cell("Geography", 7, "Italy").encode(),
                        "feature 'Geography': Unexpected string values"),
    "nan_in_a_float_column": (with_cell("Balance", 7, "nan").encode(),
                              "feature 'Balance': Invalid values (Float feature has NaN values.)"),
    "inf_in_a_float_column": (with_cell("EstimatedSalary", 7, "inf").encode(),
                              "feature 'EstimatedSalary': Invalid values (Float feature has Inf values.)"),
    "nan_in_an_int_column": (with_cell("Age", 7, "nan").encode(), "feature 'Age': Unexpected data type"),
    "empty_cell": (with_cell("Age", 7, "").encode(), "feature 'Age'"),
    "extra_column": (("\n".join(f"{line},x" for line in rows()) .replace(rows()[0] + ",x", rows()[0] + ",Notes", 1)
                      + "\n").encode(), "feature 'Notes': New column"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_csv_stops_before_training_with_one_clear_error(name, tmp_path, capsys):
    content, expected = BAD_FILES[name]
    data = tmp_path / "data"
    data.mkdir()
    (data / CHURN_CSV.name).write_bytes(content)
    serving = tmp_path / "serving"
    code = main(["run", "--dataset", "churn", "--data-dir", str(data), "--home", str(tmp_path / "runs"),
                 "--serving-dir", str(serving), "--no-report"])
    err = capsys.readouterr().err
    assert code == 1
    [error_line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert expected in err, err
    assert expected in error_line or "does not match the curated schema" in error_line
    assert "Traceback" not in err and "[while running" not in err
    assert not serving.exists() or not any(serving.rglob("saved_model.pb"))
    ran = {c.component for c in metadata.latest_run(metadata.open_store(tmp_path / "runs/churn/metadata.sqlite"))}
    assert "Trainer" not in ran and "Transform" not in ran


def test_a_utf8_bom_is_read_as_part_of_nothing(tmp_path):
    """Excel's UTF-8 BOM before the header: the first column keeps its plain name."""
    from components.csv_example_gen import check_has_data_rows, read_header
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(rows()) + "\n").encode())
    assert read_header(str(path), ",")[0] == "RowNumber"
    check_has_data_rows(str(path))
