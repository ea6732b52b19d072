"""Classroom assignments from the lessons: ``assign`` writes student copies (solutions and
hidden tests removed), ``grade`` scores submissions, the gradebook writes the CSV."""
