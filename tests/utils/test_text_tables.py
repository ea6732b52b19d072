"""minircnn/utils/text_tables.py: the plain-text and Markdown tables."""

from minircnn.utils.text_tables import markdown_table, text_table


def test_text_table_pads_columns_and_right_aligns_numbers():
    table = text_table(("name", "ms"), [("relu", "1.50"), ("conv2d stack", "12.00")], right=(1,))
    assert table.splitlines() == ["name             ms",
                                  "------------  -----",
                                  "relu           1.50",
                                  "conv2d stack  12.00"]


def test_markdown_table_marks_right_aligned_columns():
    table = markdown_table(("name", "ms"), [("relu", "1.50")], right=(1,))
    assert table.splitlines() == ["| name | ms |", "| --- | ---: |", "| relu | 1.50 |"]
