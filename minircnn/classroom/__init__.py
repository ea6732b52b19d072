"""Classroom assignments: student copies of the lessons, and their grading.

``assign`` writes student copies (solutions and
hidden tests removed); ``grade`` scores submissions with the judge in its own process
(``lesson``: the teacher's side; ``grade_run`` + ``sandbox`` + ``grade_child``: the student
process and the pipe, ``codec``: plain data on it; ``report``, ``gradebook``: the results)."""
