"""CSV shapes pandas would silently reinterpret: a first row longer than the header, a header naming a column twice."""

from __future__ import annotations

import pytest

from crossfed.shared.data.contract import DataValidationError, read_table


def test_a_first_data_row_with_an_extra_field_is_refused_naming_file_row_and_field(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,100,oops\nu2,i2,200\nu3,i3,300\n")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), 1, "field 4")
    assert str(path) in str(info.value) and "row 1" in str(info.value)


def test_a_later_row_with_an_extra_field_is_refused_with_its_row(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,100\nu2,i2,200,oops\n")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    assert info.value.row == 2


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user_id,region,region\nu1,north,south\n")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    assert (info.value.file, info.value.column) == (str(path), "region")


def test_a_well_formed_file_reads_every_row(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,100\nu2,i2,200\n")
    assert read_table(path)["user_id"].tolist() == ["u1", "u2"]
